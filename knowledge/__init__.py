"""The knowledge engine: the reference library of papers, the Chroma store, Semantic Scholar and
arXiv search, the tools agents call. Built by a later issue."""
