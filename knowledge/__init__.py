"""The knowledge engine: what the proposer and reviewer know about LM architectures.

- `library`: the reference library, one validated JSON record per paper (`PaperRecord`,
  `load_library`, `get_record`), linked to the seed units that implement it.
- `embeddings`: the offline MiniLM (packaged weights, `local_files_only`) as a Chroma
  embedding function; OpenAI embeddings when `GENESYS_EMBEDDING=openai:<model>`.
- `store`: `KnowledgeStore(run_dir)`, Chroma collections over library records, seed unit
  docs and seed/archived designs in `RUN_DIR/knowledge/`; incremental `index()`,
  `rebuild()`, `add_design()`, `search_library()`, `similar_units()`,
  `similar_designs()` and `nearest()` (novelty, deduplication).
- `search`: Semantic Scholar and arXiv over httpx, cached on disk; offline or rate
  limited, an "unavailable" result with the reason, never an exception.
- `tools`: `make_tools(store, search)`, the five LangChain tools agents call.
- `commands`: the `library` CLI (search, show, add, index).

Everything works with no key and no network; search gets wider when they are there.
"""
