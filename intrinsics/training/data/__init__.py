"""Synthetic training/evaluation data for the embedded model's intrinsics.

All facts come from a seeded knowledge base of *fictional* entities (:mod:`.kb`), so the adapters
learn to ground judgements in the documents of the conversation, not in memorised world facts.
Standard library only: building data never needs torch or the model.

    python -m intrinsics.training.data.build --out data/ --seed 0
"""

from intrinsics.training.data.kb import Doc, Entity, KnowledgeBase, generate_kb
from intrinsics.training.data.text import SYSTEM_DOCS, docs_prompt, normalize_question, split_sentences
from intrinsics.training.data.uncertainty import is_correct, label_uncertainty

__all__ = [
    "Doc",
    "Entity",
    "KnowledgeBase",
    "generate_kb",
    "SYSTEM_DOCS",
    "docs_prompt",
    "normalize_question",
    "split_sentences",
    "is_correct",
    "label_uncertainty",
]
