"""`python cli.py library ...`: search, show, add and index the reference library.

A typer sub-app (`app`) that cli.py mounts as `library`. Records users add go to the
run directory (`RUN_DIR/knowledge/records/`), never into the package; the store
indexes them with the packaged library. Expected failures print one `error:` line and
exit with code 2.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from pathlib import Path
from typing import Optional

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from knowledge.embeddings import EmbeddingError
from knowledge.library import TAGS, LibraryError, PaperRecord, normalize_arxiv
from knowledge.search import Paper, PaperSearch
from knowledge.store import KnowledgeStore, StoreError, find_record, load_records, user_records_dir

app = typer.Typer(no_args_is_help=True, help="The reference library of architecture papers and its vector store.")
console = Console()
RunDir = typer.Option(None, "--run-dir", help="Run directory holding the store [default: $GENESYS_RUN_DIR or runs/default]")

# Words in a title or abstract that suggest a tag, for records added from their metadata.
TAG_HINTS: dict[str, tuple[str, ...]] = {
    "attention": ("attention", "transformer"),
    "efficient-attention": ("efficient attention", "subquadratic", "sub-quadratic", "io-aware"),
    "sparse-attention": ("sparse attention", "sliding window", "local attention"),
    "linear-attention": ("linear attention", "linear transformer"),
    "delta-rule": ("delta rule",),
    "gating": ("gate", "gating", "gated"),
    "ssm": ("state space", "state-space", "ssm"),
    "rnn": ("recurrent", "rnn", "lstm", "recurrence"),
    "convolution": ("convolution",),
    "long-convolution": ("long convolution", "fft"),
    "test-time-training": ("test-time training", "test time training", "learn at test time"),
    "memory": ("memory",),
    "moe": ("mixture of experts", "mixture-of-experts", "experts"),
    "normalization": ("normalization", "layernorm", "rmsnorm"),
    "position-encoding": ("positional", "position encoding", "position embedding"),
    "feed-forward": ("feed-forward", "feedforward", "mlp"),
    "hybrid": ("hybrid",),
    "scaling": ("scaling law",),
    "long-context": ("long context", "long-context", "length extrapolation", "length generalization"),
    "kv-cache": ("kv cache", "kv-cache", "key-value cache"),
    "recall": ("associative recall", "in-context retrieval", "copying"),
    "hardware": ("hardware", "gpu", "kernel fusion"),
    "architecture-search": ("architecture search",),
}


def fails_cleanly(command):
    """Known errors end the command with one `error:` line on stderr and exit code 2."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (StoreError, LibraryError, EmbeddingError, OSError) as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None

    return run


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


@app.command("search")
@fails_cleanly
def search(query: str = typer.Argument(..., help="What to look for, in words"),
           k: int = typer.Option(5, "--k", "-k", min=1, max=50, help="How many records"),
           run_dir: Optional[Path] = RunDir):
    """Library records nearest a query, ranked, with cosine similarity."""
    if not query.strip():
        _fail("empty query: say what to look for")
    store = KnowledgeStore(run_dir)
    hits = store.search_library(query, k)
    records = store.records()
    table = Table("#", "id", "score", "year", "title", title=f"library: {query}")
    for rank, hit in enumerate(hits, 1):
        record = records.get(hit.id)
        table.add_row(str(rank), hit.id, f"{hit.similarity:.3f}", str(record.year if record else ""), hit.title)
    console.print(table)


@app.command("show")
@fails_cleanly
def show(paper_id: str = typer.Argument(..., help="Record id (gla-2023) or arXiv id (2312.06635)"),
         run_dir: Optional[Path] = RunDir):
    """One record in full: citation, tags, mechanism, summary, seed units."""
    records, problems = load_records(run_dir)
    record = find_record(paper_id, records)
    if record is None:
        close = difflib.get_close_matches(paper_id.strip().lower(), list(records), n=3, cutoff=0.5)
        _fail(f"no library record with id or arXiv id {paper_id!r}"
              + (f"; close matches: {', '.join(close)}" if close else ""))
    console.print(record.to_markdown(), markup=False, highlight=False, soft_wrap=True)


def _slug(title: str, year: int, taken: set[str]) -> str:
    """A record id from a title: the name before a colon when short, else three content words."""
    head = title.split(":", 1)[0] if ":" in title and len(title.split(":", 1)[0].split()) <= 3 else title
    words = [w for w in re.findall(r"[a-z0-9]+", head.lower()) if w not in {"a", "an", "the", "of", "for", "on"}]
    base = "-".join(words[:3] or ["paper"])[:50] + f"-{year}"
    slug, n = base, 2
    while slug in taken:
        slug, n = f"{base}-{n}", n + 1
    return slug


def _guess_tags(paper: Paper) -> list[str]:
    text = f"{paper.title} {paper.abstract}".lower()
    return [tag for tag, hints in TAG_HINTS.items() if any(h in text for h in hints)]


def _sentences_within(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit]
    end = cut.rfind(". ")
    return cut[:end + 1] if end > limit // 2 else cut.rsplit(" ", 1)[0] + " ..."


def record_from_paper(paper: Paper, arxiv: str, tags: list[str], record_id: str | None,
                      taken: set[str]) -> PaperRecord:
    """A library record from external metadata; its summary is the abstract, marked as such."""
    if not paper.year:
        raise LibraryError(f"arXiv:{arxiv}: the metadata has no year")
    abstract = " ".join(paper.abstract.split())
    note = f" (Abstract from {paper.source.replace('_', ' ')}, added with `library add`; not yet summarized.)"
    summary = _sentences_within(abstract, 2000 - len(note)) + note
    first = re.split(r"(?<=\.)\s", abstract, maxsplit=1)[0] if abstract else paper.title
    data = {
        "id": record_id or _slug(paper.title, paper.year, taken), "title": paper.title[:300],
        "authors": paper.authors, "year": paper.year, "venue": (paper.venue or "arXiv")[:120], "arxiv": arxiv,
        "s2_id": paper.s2_id if paper.s2_id and re.fullmatch(r"[0-9a-f]{40}", paper.s2_id) else None,
        "tags": tags, "summary": summary, "mechanism": _sentences_within(first, 400) if len(first) >= 20 else paper.title,
    }
    try:
        return PaperRecord.model_validate(data)
    except ValidationError as e:
        fields = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
        raise LibraryError(f"arXiv:{arxiv}: cannot make a valid record ({fields})") from None


@app.command("add")
@fails_cleanly
def add(arxiv_id: str = typer.Argument(..., help="arXiv id, e.g. 2312.06635"),
        tag: list[str] = typer.Option([], "--tag", help=f"Tag (repeatable); one of: {', '.join(TAGS)}"),
        record_id: Optional[str] = typer.Option(None, "--id", help="Record id [default: from the title]"),
        run_dir: Optional[Path] = RunDir):
    """Add a paper to this run's library from Semantic Scholar / arXiv metadata (needs the network)."""
    arxiv = normalize_arxiv(arxiv_id)
    if not re.fullmatch(r"\d{4}\.\d{4,5}", arxiv):
        _fail(f"{arxiv_id!r} is not an arXiv id like 2312.06635")
    unknown = [t for t in tag if t not in TAGS]
    if unknown:
        _fail(f"unknown tags {unknown}; the vocabulary is: {', '.join(TAGS)}")
    records, _ = load_records(run_dir)
    existing = find_record(arxiv, records)
    if existing is not None:
        console.print(f"arXiv:{arxiv} is already in the library as [{existing.id}]", markup=False)
        return
    folder = user_records_dir(run_dir)
    result = PaperSearch(folder.parent / "search-cache").lookup(arxiv)
    if not result.available:
        _fail(f"cannot fetch metadata for arXiv:{arxiv}: {result.reason}. "
              f"Offline? Try again with the network, or write {folder}/<id>.json by hand.")
    if not result.papers:
        _fail(f"arXiv:{arxiv}: neither Semantic Scholar nor arXiv knows this paper")
    paper = result.papers[0]
    tags = list(dict.fromkeys(tag)) or _guess_tags(paper)
    if not tags:
        _fail(f"no tag fits {paper.title!r} by its words; give one or more with --tag")
    record = record_from_paper(paper, arxiv, tags, record_id, set(records))
    if record.id in records:
        _fail(f"record id {record.id!r} is taken; choose another with --id")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{record.id}.json"
    path.write_text(json.dumps(record.model_dump(), indent=2, ensure_ascii=False) + "\n")
    console.print(f"added [{record.id}] {record.title} ({record.year}; tags: {', '.join(record.tags)}) -> {path}",
                  markup=False)
    console.print("It is embedded on the next `library index` or search.", markup=False)


@app.command("index")
@fails_cleanly
def index(rebuild: bool = typer.Option(False, "--rebuild", help="Drop the store (archived designs too) and rebuild"),
          run_dir: Optional[Path] = RunDir):
    """Build or refresh the vector store; only new or changed entries are embedded."""
    store = KnowledgeStore(run_dir)
    with Progress(TextColumn("embedding"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task("embedding", total=None)
        report = (store.rebuild if rebuild else store.index)(lambda done, total: bar.update(task, completed=done,
                                                                                           total=total))
    for problem in report.problems:
        typer.echo(f"warning: {problem}", err=True)
    console.print(f"store {store.folder}: {report.embedded} embedded ({report.summary()}); "
                  f"entries: {store.counts()}", markup=False)
