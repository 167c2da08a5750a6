"""The tools the proposer and reviewer call: the library, external search, designs, units.

`make_tools(store, search)` binds five LangChain tools to one run's store:

- `search_library(query, k)`: library records nearest a query, with ids to cite;
- `search_papers(query, k)`: Semantic Scholar / arXiv (says so when unavailable);
- `get_paper(paper_id)`: one record in full, by id or arXiv id (else looked up online);
- `similar_designs(description, k)`: seed and archived designs nearest a description;
- `similar_units(description, k)`: seed-library units to reuse, with their papers.

Each returns compact markdown. Expected failures (an empty query, an unknown id, no
network) come back as a one-line message the model can act on, never as an exception.
"""

from __future__ import annotations

import difflib

from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, Field

from knowledge.library import PaperRecord
from knowledge.search import PaperSearch
from knowledge.store import Hit, KnowledgeStore, StoreError, find_record

MAX_K = 20


class QueryArgs(BaseModel):
    query: str = Field(description="what to look for, in words: a mechanism, a property, a paper topic")
    k: int = Field(default=5, ge=1, le=MAX_K, description="how many results")


class DescriptionArgs(BaseModel):
    description: str = Field(description="the design or unit idea, in words")
    k: int = Field(default=5, ge=1, le=MAX_K, description="how many results")


class PaperArgs(BaseModel):
    paper_id: str = Field(description="a library record id (e.g. gla-2023) or an arXiv id (e.g. 2312.06635)")


def _record_line(rank: int, hit: Hit, record: PaperRecord | None) -> str:
    if record is None:  # indexed before the record was removed
        return f"{rank}. [{hit.id}] {hit.title} (similarity {hit.similarity:.2f})"
    where = ", ".join([str(record.year), record.venue] + ([f"arXiv:{record.arxiv}"] if record.arxiv else []))
    lines = [f"{rank}. [{record.id}] {record.title} ({where}) similarity {hit.similarity:.2f}",
             f"   Mechanism: {record.mechanism}"]
    if record.units:
        lines.append(f"   Seed units: {', '.join(record.units)}")
    return "\n".join(lines)


class KnowledgeTools:
    """The tool functions, bound to one store and one external search."""

    def __init__(self, store: KnowledgeStore, search: PaperSearch | None = None):
        self.store = store
        self.search = search if search is not None else PaperSearch(store.root / "search-cache")

    def search_library(self, query: str, k: int = 5) -> str:
        try:
            hits = self.store.search_library(query, k)
        except StoreError as e:
            return f"error: {e}"
        records = self.store.records()
        lines = [f"Library records nearest {query!r} (cite as [id]; get_paper(id) gives the full summary):"]
        lines += [_record_line(i, h, records.get(h.id)) for i, h in enumerate(hits, 1)]
        return "\n".join(lines) if hits else "The library is empty."

    def search_papers(self, query: str, k: int = 5) -> str:
        result = self.search.search(query, k)
        if not result.available:
            return f"{result.to_markdown()}. Carry on with search_library (offline)."
        by_arxiv = {r.arxiv: r.id for r in self.store.records().values() if r.arxiv}
        text = result.to_markdown()
        known = [f"arXiv:{p.arxiv} is library record [{by_arxiv[p.arxiv]}]" for p in result.papers
                 if p.arxiv in by_arxiv]
        return text + ("\n\nAlready in the library: " + "; ".join(known) if known else "")

    def get_paper(self, paper_id: str) -> str:
        key = paper_id.strip()
        if not key:
            return "error: give a record id (e.g. gla-2023) or an arXiv id (e.g. 2312.06635)"
        records = self.store.records()
        record = find_record(key, records)
        if record is not None:
            return record.to_markdown()
        close = difflib.get_close_matches(key.lower(), list(records), n=3, cutoff=0.5)
        hint = f" Close ids: {', '.join(close)}." if close else ""
        online = self.search.lookup(key.removeprefix("arXiv:").removeprefix("arxiv:"))
        if online.available and online.papers:
            return f"Not in the library; from {online.source}:\n{online.papers[0].to_markdown(1500)}"
        offline = "" if online.available or "not an arXiv id" in (online.reason or "") else \
            f" Online lookup unavailable: {online.reason}."
        return f"No library record with id or arXiv id {key!r}.{hint}{offline}"

    def similar_designs(self, description: str, k: int = 5) -> str:
        try:
            hits = self.store.similar_designs(description, k)
        except StoreError as e:
            return f"error: {e}"
        lines = ["Designs nearest this description (similarity near 1.0 means it is already done):"]
        for i, h in enumerate(hits, 1):
            source = h.meta.get("source", "")
            lines.append(f"{i}. [{h.id}] ({source}) {h.title} similarity {h.similarity:.2f}")
        return "\n".join(lines)

    def similar_units(self, description: str, k: int = 5) -> str:
        try:
            hits = self.store.similar_units(description, k)
        except StoreError as e:
            return f"error: {e}"
        records = self.store.records()
        lines = ["Seed-library units nearest this description (reuse them by name):"]
        for i, h in enumerate(hits, 1):
            papers = [r.id for r in records.values() if h.id in r.units]
            lines.append(f"{i}. [{h.id}] similarity {h.similarity:.2f}; used by seeds: {h.meta.get('seeds', '')}"
                         + (f"; papers: {', '.join(papers)}" if papers else ""))
            lines.append(f"   {h.title}")
        return "\n".join(lines)


def _invalid_arguments(error) -> str:
    """Tell the model which argument was wrong, so it can call again correctly."""
    try:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
    except AttributeError:
        problems = str(error)
    return f"error: invalid arguments ({problems})"


def make_tools(store: KnowledgeStore, search: PaperSearch | None = None) -> list[BaseTool]:
    """The five knowledge tools bound to `store` (and `search`; default: cached in the run dir)."""
    t = KnowledgeTools(store, search)
    specs = [
        (t.search_library, QueryArgs, "Search the reference library of LM-architecture papers (offline). "
         "Returns record ids to cite, titles, mechanisms and the seed units implementing them."),
        (t.search_papers, QueryArgs, "Search Semantic Scholar / arXiv for papers beyond the library. "
         "May be unavailable offline; then use search_library."),
        (t.get_paper, PaperArgs, "The full summary of one paper by library id or arXiv id."),
        (t.similar_designs, DescriptionArgs, "Seed and earlier designs nearest a design idea, with similarity "
         "(check novelty before proposing)."),
        (t.similar_units, DescriptionArgs, "Units of the seed library nearest a unit idea, with the seeds "
         "and papers that use them."),
    ]
    return [StructuredTool.from_function(func=f, name=f.__name__, description=d, args_schema=a,
                                         handle_tool_error=True, handle_validation_error=_invalid_arguments)
            for f, a, d in specs]
