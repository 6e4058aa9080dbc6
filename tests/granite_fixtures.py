"""io.yaml fixtures for the Granite conformance tests, one per intrinsic of IBM's libraries.

Written for these tests from the public formats (granite-common's and mellea's canned requests
and results, IBM's adapter configs): each has the keys, output schema and rule chain of its
intrinsic; instruction wordings are ours.
"""

DIGIT_VALUES = "{" + ", ".join(f'"{d}": {d / 10 + 0.05:.2f}' for d in range(10)) + "}"
INT_DIGIT_VALUES = "{" + ", ".join(f"{d}: {d / 10 + 0.05:.2f}" for d in range(10)) + "}"

#: Granite 3.x certainty: a bare digit, read as a likelihood.
UNCERTAINTY_3X = f"""model: ~
response_format: |
  {{"type": "integer", "enum": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]}}
transformations:
  - type: likelihood
    categories_to_values: {INT_DIGIT_VALUES}
    input_path: []
  - type: nest
    input_path: []
    field_name: certainty
instruction: ~
parameters: {{max_completion_tokens: 2}}
sentence_boundaries: ~
"""

#: Granite 4.1 certainty: {"score": "<digit>"} after a "<certainty>" turn.
UNCERTAINTY_41 = f"""model: ~
response_format: |
  {{"type": "object", "properties": {{"score": {{"type": "string", "enum": ["0","1","2","3","4","5","6","7","8","9"]}}}},
   "required": ["score"], "additionalProperties": false}}
transformations:
  - type: likelihood
    categories_to_values: {DIGIT_VALUES}
    input_path: [score]
  - type: project
    input_path: []
    retained_fields: {{score: certainty}}
instruction: "<certainty>"
parameters: {{max_completion_tokens: 15}}
sentence_boundaries: ~
"""

ANSWERABILITY = """model: ~
response_format: |
  {"type": "string", "enum": ["answerable", "unanswerable"]}
transformations:
  - type: likelihood
    categories_to_values: {"answerable": 1.0, "unanswerable": 0.0}
    input_path: []
  - type: nest
    input_path: []
    field_name: answerability_likelihood
instruction: ~
parameters: {max_completion_tokens: 6}
sentence_boundaries: ~
"""

#: The label form (no likelihood): {"answerability": "answerable"}.
ANSWERABILITY_LABEL = """model: ~
response_format: |
  {"type": "string", "enum": ["answerable", "unanswerable"]}
transformations:
  - {type: nest, input_path: [], field_name: answerability}
instruction: ~
parameters: {max_completion_tokens: 6}
"""

CONTEXT_RELEVANCE = """model: ~
response_format: |
  {"title": "ContextRelevance", "type": "object", "required": ["context_relevance"],
   "properties": {"context_relevance": {"type": "string", "enum": ["relevant", "irrelevant", "partially relevant"]}}}
transformations:
  - type: likelihood
    categories_to_values: {"relevant": 1.0, "partially relevant": 0.5, "irrelevant": 0.0}
    input_path: [context_relevance]
instruction: "Here is a document: {document_content}"
parameters: {max_completion_tokens: 30}
"""

#: The label form mellea's newer adapter uses: {"context_relevance": "irrelevant"}.
CONTEXT_RELEVANCE_LABEL = """model: ~
response_format: |
  {"type": "object", "required": ["context_relevance"],
   "properties": {"context_relevance": {"type": "string", "enum": ["relevant", "irrelevant", "partially relevant"]}}}
transformations: ~
instruction: "Here is a document: {document_content}"
parameters: {max_completion_tokens: 30}
"""

HALLUCINATION = """model: ~
response_format: |
  {"$defs": {"Entry": {"type": "object", "required": ["r", "e", "f"], "properties": {
     "r": {"type": "integer", "minimum": 0},
     "f": {"type": "string", "enum": ["faithful", "partial", "unfaithful"]},
     "e": {"type": "string"}}}},
   "type": "array", "items": {"$ref": "#/$defs/Entry"}}
transformations:
  - type: decode_sentences
    input_path: [~, r]
    source: last_message
    output_names: {begin: response_begin, end: response_end, text: response_text}
  - type: project
    input_path: []
    retained_fields: {response_begin: response_begin, response_end: response_end,
                      response_text: response_text, f: faithfulness, e: explanation}
instruction: "Judge each tagged sentence of the last answer against the documents."
parameters: {max_completion_tokens: 1024}
sentence_boundaries: {last_message: i}
"""

QUERY_REWRITE = """model: ~
response_format: |
  {"type": "object", "title": "QueryRewrite", "required": ["rewritten_question"],
   "properties": {"rewritten_question": {"type": "string", "title": "Rewritten Question"}}}
transformations: ~
instruction: ~
parameters: {max_completion_tokens: 256}
"""

QUERY_CLARIFICATION = """model: ~
response_format: |
  {"type": "object", "required": ["clarification"], "properties": {"clarification": {"type": "string"}}}
transformations: ~
instruction: ~
parameters: {max_completion_tokens: 256}
"""

ANSWER_RELEVANCE_CLASSIFIER = """model: ~
response_format: |
  {"type": "object", "title": "AnswerRelevanceRawOutput",
   "required": ["answer_relevance_analysis", "answer_relevance_category", "answer_relevance_judgment"],
   "properties": {
     "answer_relevance_analysis": {"type": "string"},
     "answer_relevance_category": {"type": "string", "enum": ["Pertinent", "Pertinent with relevant extra",
        "Excessive unnecessary information", "Unduly restrictive", "Too vague or generic",
        "Contextual misalignment", "Misinterpreted inquiry", "No attempt"]},
     "answer_relevance_judgment": {"type": "boolean"}}}
transformations:
  - type: likelihood
    categories_to_values: {true: 1.0, false: 0.0}
    input_path: [answer_relevance_judgment]
  - type: project
    input_path: []
    retained_fields: {answer_relevance_analysis: answer_relevance_analysis,
                      answer_relevance_category: answer_relevance_category,
                      answer_relevance_judgment: answer_relevance_likelihood}
instruction: "answer_relevance"
parameters: {max_completion_tokens: 1024}
"""

ANSWER_RELEVANCE_REWRITER = """model: ~
response_format: |
  {"type": "object", "required": ["answer_relevance_rewrite"],
   "properties": {"answer_relevance_rewrite": {"type": "string", "title": "Rewritten answer"}}}
transformations: ~
instruction: |
  Rewrite the answer for relevance. It was judged {answer_relevance_category}: {answer_relevance_analysis}
  Fix it by {correction_method}.
parameters: {max_completion_tokens: 1024}
"""

CITATIONS = """model: ~
response_format: |
  {"$defs": {"Entry": {"type": "object", "required": ["r", "c"], "properties": {
      "r": {"type": "integer", "minimum": 0},
      "c": {"type": "array", "items": {"type": "integer", "minimum": 0}}}}},
   "type": "array", "items": {"$ref": "#/$defs/Entry"}}
transformations:
  - type: decode_sentences
    input_path: [~, r]
    source: last_message
    output_names: {begin: response_begin, end: response_end, text: response_text}
  - type: explode
    input_path: []
    target_field: c
  - type: decode_sentences
    input_path: [~, c]
    source: documents
    output_names: {document_id: citation_doc_id, begin: citation_begin, end: citation_end, text: citation_text}
  - type: drop_duplicates
    input_path: []
    target_fields: [response_begin, citation_doc_id, citation_begin]
  - type: project
    input_path: []
    retained_fields: [response_begin, response_end, response_text, citation_doc_id, citation_begin,
                      citation_end, citation_text]
instruction: "List, for each tagged answer sentence, the tagged document sentences it rests on."
parameters: {max_completion_tokens: 4096}
sentence_boundaries: {last_message: r, documents: c}
"""

CONTEXT_ATTRIBUTION = """model: ~
response_format: |
  {"type": "array", "items": {"type": "object", "required": ["r", "c"], "properties": {
      "r": {"type": "integer", "minimum": 0}, "c": {"type": "array", "items": {"type": "integer"}}}}}
transformations:
  - type: decode_sentences
    input_path: [~, r]
    source: last_message
    output_names: {begin: response_begin, end: response_end, text: response_text}
  - {type: explode, input_path: [], target_field: c}
  - type: decode_sentences
    input_path: [~, c]
    source: [documents, all_but_last_message]
    output_names: {document_id: attribution_doc_id, message_index: attribution_msg_index,
                   begin: attribution_begin, end: attribution_end, text: attribution_text}
  - type: project
    input_path: []
    retained_fields: [response_begin, response_end, response_text, attribution_doc_id,
                      attribution_msg_index, attribution_begin, attribution_end, attribution_text]
instruction: "Which context sentences support each tagged answer sentence?"
parameters: {max_completion_tokens: 4096}
sentence_boundaries: {last_message: r, documents: c, all_but_last_message: c}
"""

REQUIREMENT_CHECK = """model: ~
response_format: |
  {"type": "object", "properties": {"score": {"type": "string", "enum": ["yes", "no"]}},
   "required": ["score"], "additionalProperties": false}
transformations:
  - type: likelihood
    categories_to_values: {"yes": 1.0, "no": 0.0}
    input_path: [score]
  - {type: nest, input_path: [], field_name: requirement_check}
instruction: "<requirements>: {requirement}\\nDoes the last answer meet it? Reply {{\\"score\\": \\"yes\\"}} or {{\\"score\\": \\"no\\"}}."
parameters: {max_completion_tokens: 15}
"""

GUARDIAN = """model: ~
response_format: |
  {"type": "object", "properties": {"score": {"type": "string", "enum": ["yes", "no"]}},
   "required": ["score"], "additionalProperties": false}
transformations:
  - type: likelihood
    categories_to_values: {"yes": 1.0, "no": 0.0}
    input_path: [score]
  - {type: nest, input_path: [], field_name: guardian}
instruction: "Criteria: {criteria}\\nScoring: {scoring_schema}"
parameters: {max_completion_tokens: 15}
"""

POLICY = """model: ~
response_format: |
  {"type": "object", "properties": {"label": {"type": "string", "enum": ["Yes", "No", "Ambiguous"]}},
   "required": ["label"]}
transformations: ~
instruction: "Policy: {policy_text}\\nDoes the last turn comply?"
parameters: {max_completion_tokens: 20}
"""

FACTUALITY_DETECTION = """model: ~
response_format: |
  {"type": "object", "properties": {"score": {"type": "string", "enum": ["yes", "no"]}}, "required": ["score"]}
transformations: ~
instruction: "Is the last answer factually incorrect given the documents?"
parameters: {max_completion_tokens: 15}
"""

FACTUALITY_CORRECTION = """model: ~
response_format: |
  {"type": "object", "properties": {"correction": {"type": "string"}}, "required": ["correction"]}
transformations: ~
instruction: "Correct the last answer so that it agrees with the documents."
parameters: {max_completion_tokens: 512}
"""

#: An io.yaml with a shape no library uses: a generic intrinsic typed from its schema.
GENERIC = """model: ~
response_format: |
  {"type": "object", "required": ["defective_part", "diag_likelihood"], "properties": {
     "defective_part": {"type": "string"}, "diag_likelihood": {"type": "number"}}}
transformations: ~
parameters: {max_completion_tokens: 64}
"""
