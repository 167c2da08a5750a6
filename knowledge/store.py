"""The vector store: library records, seed unit docs and archived designs in Chroma.

One Chroma `PersistentClient` per run directory, under `RUN_DIR/knowledge/`, with three
collections, all in cosine space:

- `papers`: the reference library (`knowledge/library/records/`) plus records users
  added to this run (`RUN_DIR/knowledge/records/`, see `library add`);
- `units`: every unit of the seed library, its documentation (the class docstring)
  and the one-line descriptions the seeds give it;
- `designs`: the seed designs, then archived proposals and designs (`add_design`).

Indexing is incremental: each entry carries a hash of its text and metadata, and
`index()` embeds only entries that are new or changed and deletes those gone.
`store.json` beside the Chroma folder records the schema version, the embedding and
the folder in use; when they do not match this code (an older schema, another
embedding) the store starts a fresh folder and removes the old one, so nothing
written under other rules is ever read. `rebuild()` does the same on request. A new
folder name each time also keeps Chroma's per-process client cache from handing back
a client for a deleted folder.

`nearest(text_or_tree, k)` gives the closest papers and designs with cosine
similarities, for the reviewer (novelty) and for deduplication.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable

import chromadb
from chromadb.config import Settings

from designs.catalog import run_dir_default
from designs.seeds import load_seed, seed_names
from designs.tree import UnitTree
from knowledge.embeddings import embedding_function, embedding_id
from knowledge.library import LibraryError, PaperRecord, normalize_arxiv, load_library, parse_record

SCHEMA_VERSION = 1
COLLECTIONS = ("papers", "units", "designs")
BATCH = 32  # entries embedded per Chroma upsert (one progress step)

Progress = Callable[[int, int], None]  # (entries embedded so far, entries to embed)


class StoreError(RuntimeError):
    """The store cannot do what was asked (message says why)."""


# ---------------------------------------------------------------------------- records


def user_records_dir(run_dir: str | Path | None = None) -> Path:
    """Where `library add` writes the records users add to a run."""
    return Path(run_dir or run_dir_default()) / "knowledge" / "records"


def load_records(run_dir: str | Path | None = None) -> tuple[dict[str, PaperRecord], list[str]]:
    """The packaged library plus this run's user records, and the problems of skipped ones.

    A user record that is malformed, or repeats a packaged id or arXiv id, is skipped
    and named in the problems; the packaged library itself must be valid (LibraryError).
    """
    records = load_library()
    arxiv_ids = {r.arxiv: r.id for r in records.values() if r.arxiv}
    problems = []
    for path in sorted(user_records_dir(run_dir).glob("*.json")):
        try:
            record = parse_record(path)
        except LibraryError as e:
            problems.append(str(e))
            continue
        clash = (f"id {record.id!r} is already in the library" if record.id in records else
                 f"arXiv {record.arxiv} is already [{arxiv_ids[record.arxiv]}]" if record.arxiv in arxiv_ids else
                 next((f"related id {r!r} is unknown" for r in record.related if r not in records), None))
        if clash:
            problems.append(f"{path}: {clash}; skipped")
            continue
        records[record.id] = record
        if record.arxiv:
            arxiv_ids[record.arxiv] = record.id
    return records, problems


def find_record(key: str, records: dict[str, PaperRecord]) -> PaperRecord | None:
    """A record by id or arXiv id (`2312.06635`, `arXiv:2312.06635v2`), or None."""
    key = key.strip()
    if key in records:
        return records[key]
    arxiv = normalize_arxiv(key)
    return next((r for r in records.values() if r.arxiv and r.arxiv == arxiv), None)


# ---------------------------------------------------------------------------- entries


@dataclass(frozen=True)
class Entry:
    """One document to embed: id, text and scalar metadata."""

    id: str
    text: str
    meta: dict[str, Any]

    @property
    def hash(self) -> str:
        blob = json.dumps([self.text, self.meta], sort_keys=True, ensure_ascii=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _scalar_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """Chroma metadata holds scalars; anything else is kept as JSON text."""
    out = {}
    for key, value in meta.items():
        if value is None:
            continue
        out[key] = value if isinstance(value, (str, int, float, bool)) else json.dumps(value, sort_keys=True)
    return out


def paper_entries(records: dict[str, PaperRecord]) -> list[Entry]:
    return [Entry(r.id, r.document(), {"title": r.title, "year": r.year, "arxiv": r.arxiv or "",
                                       "tags": ",".join(r.tags)})
            for r in records.values()]


@lru_cache(maxsize=1)
def _seed_trees() -> tuple[UnitTree, ...]:
    """The seed designs, parsed once per process (parsing their code is most of a no-op index)."""
    return tuple(load_seed(seed) for seed in seed_names())


def unit_entries() -> list[Entry]:
    """One entry per unit of the seed library: its docstring and what the seeds say it does."""
    docs: dict[str, str] = {}
    descs: dict[str, list[str]] = {}
    used_by: dict[str, list[str]] = {}
    for tree in _seed_trees():
        seed = tree.name
        for name, unit in tree.units.items():
            docs[name] = unit.spec.document
            if unit.desc and unit.desc not in descs.setdefault(name, []):
                descs[name].append(unit.desc)
            used_by.setdefault(name, []).append(seed)
    entries = []
    for name in sorted(docs):
        summary = " ".join(descs.get(name, []))
        text = f"{name}: {summary}\n{docs[name]}".strip()
        entries.append(Entry(name, text, {"title": summary or name, "seeds": ",".join(used_by[name])}))
    return entries


def design_text(tree: UnitTree, proposal: str = "") -> str:
    """What a design is about, most telling first (MiniLM reads the first 128 word pieces)."""
    parts = [f"{tree.name}: {tree.meta.get('description', '')}".strip(), proposal.strip(),
             "Units: " + "; ".join(f"{n}: {u.desc}" if u.desc else n for n, u in tree.units.items())]
    return "\n".join(p for p in parts if p)


def seed_design_entries() -> list[Entry]:
    entries = []
    for tree in _seed_trees():
        seed, paper = tree.name, tree.meta.get("paper") or {}
        entries.append(Entry(seed, design_text(tree), {"title": paper.get("title", seed), "source": "seed",
                                                       "family": tree.meta.get("family", "")}))
    return entries


# ---------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Hit:
    """One nearest entry: its id, cosine similarity, title and metadata."""

    id: str
    similarity: float
    title: str
    kind: str  # paper | unit | design
    meta: dict[str, Any] = field(default_factory=dict)

    def line(self, label: str = "") -> str:
        """`- [id] title (similarity 0.71)`: one markdown line an LLM can cite."""
        return f"- {label + ' ' if label else ''}[{self.id}] {self.title} (similarity {self.similarity:.2f})"


@dataclass
class Nearest:
    """The papers and designs closest to a text or design."""

    papers: list[Hit]
    designs: list[Hit]

    def lines(self) -> list[str]:
        """Markdown lines for the reviewer: designs first (novelty), then papers."""
        return [h.line("design") for h in self.designs] + [h.line("paper") for h in self.papers]


@dataclass
class IndexReport:
    """What an `index()` call changed, per collection, and user records it skipped."""

    added: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)
    removed: dict[str, int] = field(default_factory=dict)
    unchanged: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def embedded(self) -> int:
        return sum(self.added.values()) + sum(self.updated.values())

    def summary(self) -> str:
        return ", ".join(f"{c}: +{self.added.get(c, 0)} ~{self.updated.get(c, 0)} -{self.removed.get(c, 0)} "
                         f"={self.unchanged.get(c, 0)}" for c in COLLECTIONS)


# ---------------------------------------------------------------------------- the store


class KnowledgeStore:
    """The Chroma store of one run directory (see the module docstring)."""

    def __init__(self, run_dir: str | Path | None = None, embedding=None):
        """`embedding`: an embedding function or a spec (`minilm`, `openai:<model>`); None is the default."""
        self.run_dir = Path(run_dir or run_dir_default())
        self.root = self.run_dir / "knowledge"
        self.ef = embedding if embedding is not None and not isinstance(embedding, str) \
            else embedding_function(embedding)
        self._fresh = False  # index() has run on this instance
        self._open()

    # -- opening, schema marker, rebuild

    @property
    def _marker(self) -> Path:
        return self.root / "store.json"

    def _expected(self) -> dict[str, Any]:
        return {"schema": SCHEMA_VERSION, "embedding": embedding_id(self.ef)}

    def _open(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        marker = self._read_marker()
        folder = marker.get("dir", "")
        if {k: marker.get(k) for k in self._expected()} == self._expected() and folder.startswith("chroma-") \
                and (self.root / folder).is_dir():
            self._connect(self.root / folder)
        else:
            if marker or any(self.root.glob("chroma*")):
                warnings.warn(f"{self.root}: store written under other rules ({marker or 'no marker'}); "
                              "rebuilding", stacklevel=3)
            self._start_fresh_folder()

    def _read_marker(self) -> dict[str, Any]:
        try:
            data = json.loads(self._marker.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _start_fresh_folder(self) -> None:
        """A new, empty Chroma folder; the marker then points to it and older folders go."""
        folder = self.root / f"chroma-{secrets.token_hex(4)}"
        self._connect(folder)
        tmp = self._marker.with_suffix(".tmp")
        tmp.write_text(json.dumps({**self._expected(), "dir": folder.name}, indent=1))
        tmp.replace(self._marker)
        for old in self.root.glob("chroma*"):
            if old == folder:
                continue
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)
        self._fresh = False

    def _connect(self, folder: Path) -> None:
        self.folder = folder
        self.client = chromadb.PersistentClient(str(folder), settings=Settings(anonymized_telemetry=False))
        self.collections = {
            name: self.client.get_or_create_collection(
                name, embedding_function=self.ef, configuration={"hnsw": {"space": "cosine"}})
            for name in COLLECTIONS}

    def rebuild(self, progress: Progress | None = None) -> IndexReport:
        """Drop everything (archived designs too) and index the library and seeds from scratch."""
        self._start_fresh_folder()
        return self.index(progress)

    # -- indexing

    def index(self, progress: Progress | None = None) -> IndexReport:
        """Bring papers, units and seed designs up to date, embedding only what changed."""
        records, problems = load_records(self.run_dir)
        wanted = {"papers": paper_entries(records), "units": unit_entries(), "designs": seed_design_entries()}
        report = IndexReport(problems=problems)
        plans = {name: self._plan(name, entries, report) for name, entries in wanted.items()}
        total = sum(len(todo) for todo in plans.values())
        done = 0
        if progress:
            progress(0, total)
        for name, todo in plans.items():
            for start in range(0, len(todo), BATCH):
                self._upsert(name, todo[start:start + BATCH])
                done += len(todo[start:start + BATCH])
                if progress:
                    progress(done, total)
        self._fresh = True
        return report

    def _plan(self, name: str, entries: list[Entry], report: IndexReport) -> list[Entry]:
        """Entries to embed; deletes stale ones (archived designs are never stale)."""
        col = self.collections[name]
        stored = col.get(include=["metadatas"])
        have = {i: (m or {}).get("hash") for i, m in zip(stored["ids"], stored["metadatas"])}
        sources = {i: (m or {}).get("source") for i, m in zip(stored["ids"], stored["metadatas"])}
        wanted_ids = {e.id for e in entries}
        stale = [i for i in have if i not in wanted_ids and not (name == "designs" and sources[i] == "archive")]
        if stale:
            col.delete(ids=stale)
        todo = [e for e in entries if have.get(e.id) != e.hash]
        report.added[name] = sum(e.id not in have for e in todo)
        report.updated[name] = len(todo) - report.added[name]
        report.removed[name] = len(stale)
        report.unchanged[name] = len(entries) - len(todo)
        return todo

    def _upsert(self, name: str, entries: list[Entry]) -> None:
        if entries:
            self.collections[name].upsert(
                ids=[e.id for e in entries], documents=[e.text for e in entries],
                metadatas=[{**_scalar_meta(e.meta), "hash": e.hash} for e in entries])

    def _ensure_indexed(self) -> None:
        if not self._fresh:
            report = self.index()
            for problem in report.problems:
                warnings.warn(problem, stacklevel=3)

    def add_design(self, name: str, text: str | UnitTree, meta: dict[str, Any] | None = None,
                   proposal: str = "") -> bool:
        """Archive a proposal or design for novelty search; False when it was already there unchanged.

        `text` is the proposal/design text, or a UnitTree (described by `design_text`, with
        `proposal` first). A name already held by a seed is refused.
        """
        if not name.strip():
            raise StoreError("a design needs a name")
        if name in seed_names():
            raise StoreError(f"{name!r} is a seed design; archived designs need their own names")
        if isinstance(text, UnitTree):
            text = design_text(text, proposal)
        if not text.strip():
            raise StoreError(f"design {name!r}: nothing to index (empty text)")
        entry = Entry(name, text, {**(meta or {}), "title": (meta or {}).get("title", name), "source": "archive"})
        col = self.collections["designs"]
        old = col.get(ids=[name], include=["metadatas"])
        if old["ids"] and (old["metadatas"][0] or {}).get("hash") == entry.hash:
            return False
        self._upsert("designs", [entry])
        return True

    def counts(self) -> dict[str, int]:
        return {name: col.count() for name, col in self.collections.items()}

    # -- queries

    def _query(self, name: str, embedding: list[float], k: int, exclude: Iterable[str] = ()) -> list[Hit]:
        col = self.collections[name]
        exclude = set(exclude)
        n = min(col.count(), k + len(exclude))
        if n <= 0:
            return []
        res = col.query(query_embeddings=[embedding], n_results=n, include=["metadatas", "distances"])
        hits = []
        for i, meta, dist in zip(res["ids"][0], res["metadatas"][0], res["distances"][0]):
            if i in exclude:
                continue
            meta = {key: v for key, v in (meta or {}).items() if key != "hash"}
            hits.append(Hit(i, round(1.0 - float(dist), 4), str(meta.pop("title", i)), name.rstrip("s"), meta))
        return hits[:k]

    def _embed_query(self, text: str) -> list[float]:
        if not text or not text.strip():
            raise StoreError("empty query: say what to look for")
        self._ensure_indexed()
        return [float(x) for x in self.ef.embed_query([text])[0]]

    def search_library(self, query: str, k: int = 5) -> list[Hit]:
        """Library records closest to a query, best first."""
        return self._query("papers", self._embed_query(query), k)

    def similar_units(self, query: str, k: int = 5) -> list[Hit]:
        """Seed-library units closest to a description, best first."""
        return self._query("units", self._embed_query(query), k)

    def similar_designs(self, query: str, k: int = 5, exclude: Iterable[str] = ()) -> list[Hit]:
        """Seed and archived designs closest to a description, best first."""
        return self._query("designs", self._embed_query(query), k, exclude)

    def nearest(self, text_or_tree: str | UnitTree, k: int = 5, exclude: Iterable[str] = ()) -> Nearest:
        """The k closest library records and the k closest designs, with similarities.

        A tree is described by `design_text` and its own name is excluded, so a design
        already archived does not find itself.
        """
        if isinstance(text_or_tree, UnitTree):
            exclude = {*exclude, text_or_tree.name}
            text_or_tree = design_text(text_or_tree)
        embedding = self._embed_query(text_or_tree)
        return Nearest(self._query("papers", embedding, k), self._query("designs", embedding, k, exclude))

    def records(self) -> dict[str, PaperRecord]:
        """Every record this store indexes: the library and this run's user records."""
        return load_records(self.run_dir)[0]
