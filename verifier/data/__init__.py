"""Data for the verifier: synthetic tasks, corpora and tokenizers."""
