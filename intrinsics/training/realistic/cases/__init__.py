"""Hand-written realistic evaluation cases, one YAML file per domain (see ``loader.py``).

Written by hand for evaluation only, independently of the training-data generators: never train
on them. The documents are short texts on real-world topics written from general knowledge; a
label is always relative to the documents of its case, not to the world.
"""
