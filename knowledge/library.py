"""The reference library: language-model architecture papers as validated records.

Each paper is one JSON file, `knowledge/library/records/<id>.json`, whose name is its id:
a stable lowercase slug such as `gla-2023` or `mamba2-2024`. A record holds

- `id`, `title`, `authors` (a long list may end with "et al."), `year`, `venue`
  ("ICML 2024", "arXiv", ...), `arxiv` (e.g. "2312.06635"; null only for papers not on
  arXiv) and `s2_id` (the Semantic Scholar paper id when known for certain, else null);
- `tags`, drawn from the fixed vocabulary `TAGS` below;
- `summary`: 3-6 sentences in this project's own words (never the abstract): what the
  paper changes in the block, its key mechanism (with the core equation in plain text
  where it helps) and headline results as numbers the paper itself reports;
- `mechanism`: the mechanism in one sentence;
- `units`: the seed units (`designs/seeds/units/*.py`) that implement it, `seeds`: the
  seed designs (`designs/seeds/*.json`) that follow it, and `related`: ids of other
  records in the library.

`load_library()` reads and validates every record (cached) and raises `LibraryError`,
naming the file and the field, on any bad record, duplicate id or arXiv id, an id that
does not match its file name, or a `related` id the library lacks. `get_record()` finds a
record by id or arXiv id; `PaperRecord.to_markdown()` is the form agents cite and
`PaperRecord.document()` the text embedded in the vector store.
"""

from __future__ import annotations

import difflib
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from designs.seeds import library_units, seed_names

RECORDS_DIR = Path(__file__).parent / "library" / "records"

ID_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
ARXIV_PATTERN = r"^\d{4}\.\d{4,5}$"
S2_PATTERN = r"^[0-9a-f]{40}$"

TAGS: dict[str, str] = {
    "attention": "softmax attention and the Transformer block built around it",
    "efficient-attention": "cheaper exact or approximate softmax attention (kernels, low rank, hashing, IO-aware)",
    "sparse-attention": "attention restricted to a pattern: local or sliding windows, strides, global or selected tokens",
    "linear-attention": "attention with a kernel feature map or no softmax, run as a recurrence over a matrix state",
    "delta-rule": "fast-weight memories edited by the delta rule (error-correcting writes)",
    "gating": "data-dependent gates: forget/decay gates on a state, output or input gates",
    "ssm": "state-space models: continuous or discretized linear dynamical systems as sequence layers",
    "rnn": "recurrent networks, nonlinear or linear, and their parallel training",
    "convolution": "convolutions over the sequence (short, gated or depthwise)",
    "long-convolution": "convolutions with filters as long as the sequence, usually computed with FFTs",
    "test-time-training": "layers whose state is a model trained by gradient steps while reading the sequence",
    "memory": "explicit memories beyond the context: caches, compressed memories, retrieval",
    "moe": "mixtures of experts and other conditional computation (routing tokens or heads)",
    "normalization": "LayerNorm, RMSNorm and the placement and scaling of norms and residuals",
    "position-encoding": "absolute, relative, rotary or no position information",
    "feed-forward": "the channel-mixing MLP of a block",
    "activation": "elementwise nonlinearities (GELU, Swish, squared ReLU, ...)",
    "hybrid": "stacks or layers mixing attention with recurrent, SSM or convolutional mixers",
    "scaling": "scaling laws and compute-optimal training",
    "benchmark": "evaluation suites and synthetic tasks",
    "data": "pretraining corpora",
    "training": "training methods, stability and model suites",
    "hardware": "hardware-aware algorithms and kernels (tiling, chunking, scans, tensor cores)",
    "recall": "associative recall, copying and in-context retrieval",
    "expressivity": "formal results on what a sequence model can compute",
    "long-context": "extending or exploiting long contexts, length extrapolation",
    "kv-cache": "shrinking or bounding the decoding cache",
    "architecture-search": "automated discovery of architectures (NAS, evolution, LLM agents)",
    "foundation-model": "a released large model family whose report fixes an architecture",
}


class LibraryError(ValueError):
    """A record or the library as a whole is invalid; the message names the file and field."""


class PaperRecord(BaseModel):
    """One paper of the reference library (see the module docstring for the format)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=ID_PATTERN, max_length=60)
    title: str = Field(min_length=3, max_length=300)
    authors: list[str] = Field(min_length=1)
    year: int = Field(ge=1990, le=2026)
    venue: str = Field(min_length=2, max_length=120)
    arxiv: Optional[str] = Field(pattern=ARXIV_PATTERN)
    s2_id: Optional[str] = Field(default=None, pattern=S2_PATTERN)
    tags: list[str] = Field(min_length=1)
    summary: str = Field(min_length=200, max_length=2000)
    mechanism: str = Field(min_length=20, max_length=400)
    units: list[str] = Field(default_factory=list)
    seeds: list[str] = Field(default_factory=list)
    related: list[str] = Field(default_factory=list)

    @field_validator("authors")
    @classmethod
    def _authors(cls, authors: list[str]) -> list[str]:
        if any(not a.strip() for a in authors):
            raise ValueError("author names must be non-empty")
        if "et al." in authors[:-1] or authors == ["et al."]:
            raise ValueError('"et al." may only end a list of named authors')
        return authors

    @field_validator("tags")
    @classmethod
    def _tags(cls, tags: list[str]) -> list[str]:
        unknown = [t for t in tags if t not in TAGS]
        if unknown:
            raise ValueError(f"unknown tags {unknown}; the vocabulary is: {', '.join(TAGS)}")
        if len(set(tags)) != len(tags):
            raise ValueError("duplicate tags")
        return tags

    @field_validator("units")
    @classmethod
    def _units(cls, units: list[str]) -> list[str]:
        unknown = sorted(set(units) - set(library_units()))
        if unknown:
            raise ValueError(f"not seed units: {unknown}; units: {', '.join(library_units())}")
        return units

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, seeds: list[str]) -> list[str]:
        unknown = sorted(set(seeds) - set(seed_names()))
        if unknown:
            raise ValueError(f"not seed designs: {unknown}; seeds: {', '.join(seed_names())}")
        return seeds

    @field_validator("related")
    @classmethod
    def _related(cls, related: list[str]) -> list[str]:
        bad = [r for r in related if not re.match(ID_PATTERN, r)]
        if bad:
            raise ValueError(f"not record ids: {bad}")
        return related

    @field_validator("title", "venue", "summary", "mechanism")
    @classmethod
    def _stripped(cls, text: str) -> str:
        if text != text.strip():
            raise ValueError("leading or trailing whitespace")
        return text

    def citation(self) -> str:
        """`[id] Title (Authors, Year, venue, arXiv:...)`, authors shortened past three."""
        names = [a for a in self.authors if a != "et al."]
        authors = ", ".join(names[:3]) + (" et al." if len(names) > 3 or len(names) < len(self.authors) else "")
        where = [authors, str(self.year), self.venue] + ([f"arXiv:{self.arxiv}"] if self.arxiv else [])
        return f"[{self.id}] {self.title} ({', '.join(where)})"

    def to_markdown(self) -> str:
        """A compact markdown entry an LLM can read and cite by id."""
        lines = [f"**{self.citation()}**", f"Tags: {', '.join(self.tags)}",
                 f"Mechanism: {self.mechanism}", "", self.summary]
        if self.units:
            lines.append(f"Seed units: {', '.join(self.units)}")
        if self.related:
            lines.append(f"Related: {', '.join(self.related)}")
        return "\n".join(lines)

    def document(self) -> str:
        """The plain text embedded in the vector store: title, mechanism, summary, tags."""
        return f"{self.title}\n{self.mechanism}\n{self.summary}\nTags: {', '.join(self.tags)}"


def _field_errors(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "(record)"
        parts.append(f"field '{loc}': {e['msg']}")
    return "; ".join(parts)


def parse_record(path: Path) -> PaperRecord:
    """Read and validate one record file; LibraryError names the file and the bad field."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise LibraryError(f"{path}: unreadable JSON: {e}") from None
    if not isinstance(data, dict):
        raise LibraryError(f"{path}: a record must be a JSON object, got {type(data).__name__}")
    try:
        record = PaperRecord.model_validate(data)
    except ValidationError as e:
        raise LibraryError(f"{path}: {_field_errors(e)}") from None
    if record.id != path.stem:
        raise LibraryError(f"{path}: field 'id': {record.id!r} does not match the file name {path.stem!r}")
    return record


@lru_cache(maxsize=8)
def _load(directory: str) -> dict[str, PaperRecord]:
    root = Path(directory)
    paths = sorted(root.glob("*.json"))
    if not paths:
        raise LibraryError(f"{root}: no record files (*.json)")
    records: dict[str, PaperRecord] = {}
    by_arxiv: dict[str, Path] = {}
    for path in paths:  # ids equal their (unique) file names, so they are unique too
        record = parse_record(path)
        if record.arxiv:
            if record.arxiv in by_arxiv:
                raise LibraryError(f"{path}: field 'arxiv': {record.arxiv} is also the arXiv id of "
                                   f"{by_arxiv[record.arxiv].name}")
            by_arxiv[record.arxiv] = path
        records[record.id] = record
    for record in records.values():
        for rid in record.related:
            if rid == record.id:
                raise LibraryError(f"{root / (record.id + '.json')}: field 'related': lists itself")
            if rid not in records:
                close = difflib.get_close_matches(rid, records, n=3)
                raise LibraryError(f"{root / (record.id + '.json')}: field 'related': unknown id {rid!r}"
                                   + (f" (close: {', '.join(close)})" if close else ""))
    return records


def load_library(path: str | Path | None = None) -> dict[str, PaperRecord]:
    """All records of a library directory (default: the packaged one), by id, sorted by id.

    Validated once per directory and cached; each call returns a fresh dict of the same
    (immutable) records.
    """
    return dict(_load(str(Path(path or RECORDS_DIR).resolve())))


def normalize_arxiv(key: str) -> str:
    """`arXiv:2312.06635v2`, `https://arxiv.org/abs/2312.06635` ... -> `2312.06635`."""
    key = key.strip()
    key = re.sub(r"^(arxiv:|https?://arxiv\.org/(abs|pdf)/)", "", key, flags=re.I)
    return re.sub(r"v\d+$", "", key.removesuffix(".pdf"))


def get_record(id_or_arxiv: str, path: str | Path | None = None) -> PaperRecord:
    """A record by id (`gla-2023`) or arXiv id (`2312.06635`, `arXiv:2312.06635v2`).

    KeyError, with the closest ids and titles, when nothing matches.
    """
    records = load_library(path)
    key = id_or_arxiv.strip()
    if key in records:
        return records[key]
    arxiv = normalize_arxiv(key)
    for record in records.values():
        if record.arxiv and record.arxiv == arxiv:
            return record
    titles = {r.title.lower(): r.id for r in records.values()}
    close = difflib.get_close_matches(key.lower(), list(records), n=3, cutoff=0.5)
    close += [titles[t] for t in difflib.get_close_matches(key.lower(), list(titles), n=3, cutoff=0.5)]
    close = list(dict.fromkeys(close))
    hint = f"; close matches: {', '.join(close)}" if close else ""
    raise KeyError(f"no library record with id or arXiv id {id_or_arxiv!r}{hint}")


def records_for_unit(unit: str, path: str | Path | None = None) -> list[PaperRecord]:
    """The records whose mechanism the seed unit `unit` implements (empty when none)."""
    return [r for r in load_library(path).values() if unit in r.units]


def records_with_tag(tag: str, path: str | Path | None = None) -> list[PaperRecord]:
    """The records carrying `tag` (KeyError for a tag outside the vocabulary)."""
    if tag not in TAGS:
        raise KeyError(f"unknown tag {tag!r}; the vocabulary is: {', '.join(TAGS)}")
    return [r for r in load_library(path).values() if tag in r.tags]
