"""Text corpora for the verifier, each with a fingerprint.

A corpus is a set of documents split into ``"train"`` and ``"validation"``. Three kinds:

* ``load_corpus("stdlib")`` (the default, no download): the Python standard library
  source of the running interpreter: the ``*.py`` files under ``sysconfig``'s stdlib
  path, without test packages (any path component ``test``, ``tests`` or
  ``idle_test``, or a ``test_*.py`` file name), ``site-packages``/``dist-packages``,
  ``__pycache__``, and the build-specific ``_sysconfigdata_*.py`` / ``config-*``
  files (so that the same Python version gives the same corpus on every machine).
* ``load_corpus("some/dir")``, ``load_corpus("docs/**/*.md")`` or
  ``load_corpus("files:a.txt,notes/*.md")``: local UTF-8 text files and globs.
  A directory means every non-hidden text file under it.
* Hugging Face datasets (see ``HFCorpus``).

Splits of file corpora are BY FILE, never by random chunk: a file belongs to the
validation split when the SHA-256 of its relative path (POSIX form) falls in the
lowest ``val_fraction`` (default 5%) of the hash range. The split therefore depends
only on the relative paths: identical across runs and across machines with the same
files. When that rule puts no file in validation (small corpora), the file with the
lowest hash goes there, so both splits are non-empty whenever there are two files.
A corpus of a single file is split by lines instead: with ``n`` lines, the first
``n - max(1, floor(n * val_fraction))`` lines are train and the rest validation
(a file of one line is train only).

Documents are joined by ``DOC_SEPARATOR`` (the NUL byte, which text never contains;
it is also the byte tokenizer's end-of-text id) wherever they are concatenated.
"""

from __future__ import annotations

import glob as _glob
import hashlib
import json
import math
import os
import re
import sys
import sysconfig
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

SPLITS = ("train", "validation")
DOC_SEPARATOR = b"\x00"
DEFAULT_VAL_FRACTION = 0.05
_FORMAT = "genesys-corpus-v1"
_GLOB_CHARS = re.compile(r"[*?\[]")


class CorpusError(Exception):
    """A corpus can't be found, read or reached. The message says what to do."""


def default_cache_dir() -> Path:
    """``$GENESYS_CACHE`` if set, else ``~/.cache/genesys``."""
    env = os.environ.get("GENESYS_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "genesys"


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise CorpusError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")


def _path_hash(rel: str) -> int:
    """Stable 64-bit hash of a relative path (its POSIX form)."""
    return int.from_bytes(hashlib.sha256(rel.encode("utf-8")).digest()[:8], "big")


def _order_key(seed: int, key: str) -> bytes:
    return hashlib.sha256(f"{seed}\x00{key}".encode("utf-8")).digest()


@dataclass(frozen=True)
class _Doc:
    """One document: a whole file, or a range of its lines (single-file corpora)."""

    path: Path
    key: str  # the relative path, plus the line range when there is one
    lines: tuple[int, int] | None = None  # [start, stop) line indices


class Corpus:
    """Base class: a named set of documents split into train and validation."""

    name: str = "corpus"

    def files(self, split: str) -> list[Path]:
        raise NotImplementedError

    def fingerprint(self, split: str) -> str:
        raise NotImplementedError

    def read_bytes(self, split: str, max_bytes: int, seed: int = 0) -> bytes:
        raise NotImplementedError

    def iter_text(self, split: str) -> Iterator[str]:
        raise NotImplementedError

    def describe(self) -> dict:
        """A JSON-able summary, for reports and run records."""
        return {"name": self.name, "kind": type(self).__name__}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class FileCorpus(Corpus):
    """Documents read from local files, split by file (see the module docstring).

    ``fingerprint(split)`` is the SHA-256 (first 16 hex digits) of the format tag,
    the split name and, for each of the split's documents in order, its relative
    path, size and content SHA-256. Content hashes are cached in memory keyed by the
    file's (size, mtime, inode), so a second fingerprint only stats the files, and an
    edited file is hashed again.
    """

    def __init__(
        self,
        name: str,
        root: Path,
        paths: Iterable[Path],
        val_fraction: float = DEFAULT_VAL_FRACTION,
        strict_utf8: bool = True,
    ):
        if not 0.0 <= val_fraction < 1.0:
            raise CorpusError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self.name = name
        self.root = Path(root)
        self.val_fraction = val_fraction
        self.strict_utf8 = strict_utf8
        unique = {Path(p).resolve(): None for p in paths}
        rel = sorted((self._rel(p), p) for p in unique)
        if not rel:
            raise CorpusError(f"corpus {name!r} has no files")
        self._splits = self._split(rel)
        self._hash_cache: dict[str, tuple[tuple[int, int, int], int, str]] = {}

    # -- splitting -------------------------------------------------------------

    def _rel(self, path: Path) -> str:
        try:
            return path.relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return path.as_posix()

    def _split(self, rel: list[tuple[str, Path]]) -> dict[str, list[_Doc]]:
        if len(rel) == 1:
            key, path = rel[0]
            n = len(self._raw(path).splitlines(keepends=True))
            n_val = 0 if n < 2 else max(1, math.floor(n * self.val_fraction))
            cut = n - n_val
            train = [_Doc(path, f"{key}#L0-{cut}", (0, cut))]
            val = [_Doc(path, f"{key}#L{cut}-{n}", (cut, n))] if n_val else []
            return {"train": train, "validation": val}
        limit = self.val_fraction * 2**64
        hashes = {key: _path_hash(key) for key, _ in rel}
        val_keys = {key for key in hashes if hashes[key] < limit}
        if not val_keys and self.val_fraction > 0:
            val_keys = {min(hashes, key=hashes.__getitem__)}
        return {
            "train": [_Doc(p, k) for k, p in rel if k not in val_keys],
            "validation": [_Doc(p, k) for k, p in rel if k in val_keys],
        }

    def _docs(self, split: str) -> list[_Doc]:
        _check_split(split)
        return self._splits[split]

    # -- reading ---------------------------------------------------------------

    def _raw(self, path: Path) -> bytes:
        try:
            return path.read_bytes()
        except OSError as exc:
            raise CorpusError(f"cannot read {path}: {exc.strerror or exc}") from None

    def _doc_bytes(self, doc: _Doc) -> bytes:
        data = self._raw(doc.path)
        if doc.lines is not None:
            start, stop = doc.lines
            data = b"".join(data.splitlines(keepends=True)[start:stop])
        return data

    def _doc_text(self, doc: _Doc) -> str:
        data = self._doc_bytes(doc)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            if self.strict_utf8:
                raise CorpusError(f"{doc.path} is not UTF-8 text (byte {exc.start})") from None
            return data.decode("utf-8", errors="replace")

    def files(self, split: str) -> list[Path]:
        """The split's files, sorted by relative path. A single-file corpus returns
        that file for both splits (its lines are split, see the module docstring)."""
        return [doc.path for doc in self._docs(split)]

    def num_files(self, split: str) -> int:
        return len(self._docs(split))

    def iter_text(self, split: str) -> Iterator[str]:
        """The split's documents as text, in relative-path order."""
        for doc in self._docs(split):
            yield self._doc_text(doc)

    def iter_bytes(self, split: str) -> Iterator[bytes]:
        for doc in self._docs(split):
            yield self._doc_bytes(doc)

    def read_bytes(self, split: str, max_bytes: int, seed: int = 0) -> bytes:
        """Up to ``max_bytes`` of the split: its documents in an order fixed by
        ``seed`` (sorted by SHA-256 of seed and relative path, so it is the same on
        every machine), joined by ``DOC_SEPARATOR`` and cut at ``max_bytes``. Only
        the files needed are read."""
        if max_bytes < 0:
            raise CorpusError(f"max_bytes must be >= 0, got {max_bytes}")
        docs = sorted(self._docs(split), key=lambda d: _order_key(seed, d.key))
        parts: list[bytes] = []
        total = 0
        for i, doc in enumerate(docs):
            if total >= max_bytes:
                break
            if i:
                parts.append(DOC_SEPARATOR)
                total += len(DOC_SEPARATOR)
            data = self._doc_bytes(doc)
            parts.append(data)
            total += len(data)
        return b"".join(parts)[:max_bytes]

    def num_bytes(self, split: str) -> int:
        """Total bytes of the split's documents (separators not counted)."""
        if any(doc.lines is not None for doc in self._docs(split)):
            return sum(len(self._doc_bytes(doc)) for doc in self._docs(split))
        return sum(self._stat(doc.path).st_size for doc in self._docs(split))

    # -- fingerprint -----------------------------------------------------------

    def _stat(self, path: Path) -> os.stat_result:
        try:
            return path.stat()
        except OSError as exc:
            raise CorpusError(f"cannot read {path}: {exc.strerror or exc}") from None

    def _content_hash(self, doc: _Doc) -> tuple[int, str]:
        st = self._stat(doc.path)
        stamp = (st.st_size, st.st_mtime_ns, st.st_ino)
        hit = self._hash_cache.get(doc.key)
        if hit is not None and hit[0] == stamp:
            return hit[1], hit[2]
        data = self._doc_bytes(doc)
        digest = hashlib.sha256(data).hexdigest()
        self._hash_cache[doc.key] = (stamp, len(data), digest)
        return len(data), digest

    def fingerprint(self, split: str) -> str:
        h = hashlib.sha256(f"{_FORMAT}\n{split}\n".encode())
        for doc in self._docs(split):
            size, digest = self._content_hash(doc)
            h.update(f"{doc.key}\t{size}\t{digest}\n".encode("utf-8"))
        return h.hexdigest()[:16]

    def describe(self) -> dict:
        return {
            "name": self.name,
            "kind": "files",
            "root": str(self.root),
            "val_fraction": self.val_fraction,
            "files": {s: self.num_files(s) for s in SPLITS},
            "fingerprint": {s: self.fingerprint(s) for s in SPLITS},
        }


# -- the standard library --------------------------------------------------------

_STDLIB_SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}


def _stdlib_excluded(rel_parts: tuple[str, ...]) -> bool:
    dirs, fname = rel_parts[:-1], rel_parts[-1]
    if any(d in _STDLIB_SKIP_DIRS or d.startswith(".") for d in dirs):
        return True
    if dirs and dirs[0].startswith("config-"):
        return True
    return fname.startswith("test_") or fname.startswith("_sysconfigdata_")


def stdlib_files(root: Path | None = None) -> list[Path]:
    """The standard-library source files the ``stdlib`` corpus uses, sorted."""
    root = Path(root or sysconfig.get_paths()["stdlib"])
    if not root.is_dir():
        raise CorpusError(f"the standard library source is not at {root}: use --corpus PATH")
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root).parts
        dirnames[:] = sorted(d for d in dirnames if not _stdlib_excluded(rel_dir + (d, "x.py")))
        for fname in filenames:
            if fname.endswith(".py") and not _stdlib_excluded(rel_dir + (fname,)):
                found.append(Path(dirpath) / fname)
    if not found:
        raise CorpusError(f"no Python source found under {root}: use --corpus PATH")
    return sorted(found)


class StdlibCorpus(FileCorpus):
    """The embedded default corpus: the running interpreter's stdlib source."""

    def __init__(self, root: Path | None = None, val_fraction: float = DEFAULT_VAL_FRACTION):
        root = Path(root or sysconfig.get_paths()["stdlib"])
        super().__init__("stdlib", root, stdlib_files(root), val_fraction, strict_utf8=False)
        self.python_version = "%d.%d.%d" % sys.version_info[:3]

    def describe(self) -> dict:
        return {**super().describe(), "kind": "stdlib", "python": self.python_version}


# -- local files and globs --------------------------------------------------------


def _is_text_file(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return b"\x00" not in fh.read(8192)
    except OSError:
        return True  # keep it: reading it later gives a clear error


def _expand(pattern: str) -> list[Path]:
    pattern = os.path.expanduser(pattern.strip())
    if not pattern:
        return []
    if _GLOB_CHARS.search(pattern):
        return [Path(p) for p in _glob.glob(pattern, recursive=True) if Path(p).is_file()]
    path = Path(pattern)
    if path.is_file():
        return [path]
    if path.is_dir():
        out = []
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__pycache__")
            out += [Path(dirpath) / f for f in filenames if not f.startswith(".")]
        return [p for p in out if _is_text_file(p)]
    return []


def files_corpus(patterns: list[str], val_fraction: float = DEFAULT_VAL_FRACTION, name: str | None = None) -> FileCorpus:
    """A corpus of local files: each pattern is a file, a directory or a glob."""
    paths: list[Path] = []
    for pattern in patterns:
        matched = _expand(pattern)
        if not matched:
            raise CorpusError(f"no file matched {pattern!r}")
        paths += matched
    resolved = [p.resolve() for p in paths]
    if len(resolved) == 1:
        root = resolved[0].parent
    else:
        root = Path(os.path.commonpath([str(p.parent) for p in resolved]))
    return FileCorpus(name or ",".join(patterns), root, resolved, val_fraction)


# -- entry point -----------------------------------------------------------------

HF_ALIASES = {
    "fineweb-edu": ("HuggingFaceFW/fineweb-edu", "sample-10BT"),
    "smollm": ("HuggingFaceTB/smollm-corpus", "cosmopedia-v2"),
}


def load_corpus(spec: str = "stdlib", **kw) -> Corpus:
    """A corpus from its spec.

    ``"stdlib"`` (default); a path, directory or glob; ``"files:a.txt,b/*.md"``;
    ``"fineweb-edu"``, ``"smollm"`` or ``"hf:owner/name[:config]"`` (Hugging Face).
    Keyword arguments go to the corpus (``val_fraction=``, and for Hugging Face
    ``text_field=``, ``val_docs=``, ``data_files=``...).
    """
    spec = (spec or "stdlib").strip()
    if spec == "stdlib":
        return StdlibCorpus(**kw)
    if spec.startswith("files:"):
        patterns = [p for p in spec[len("files:"):].split(",") if p.strip()]
        if not patterns:
            raise CorpusError("'files:' needs at least one path or glob, e.g. files:notes/*.md")
        return files_corpus(patterns, **kw)
    if spec in HF_ALIASES or spec.startswith("hf:"):
        return _hf_corpus(spec, **kw)
    if _GLOB_CHARS.search(spec) or "/" in spec or os.sep in spec or "." in spec or Path(spec).exists():
        return files_corpus([spec], **kw)
    known = ", ".join(["stdlib", *HF_ALIASES])
    raise CorpusError(
        f"unknown corpus {spec!r}: use one of {known}, hf:owner/name[:config], "
        "a path, a glob, or files:a.txt,b/*.md"
    )


def _hf_corpus(spec: str, **kw) -> Corpus:
    raise CorpusError(f"Hugging Face corpora are not available yet ({spec!r}): use --corpus stdlib")
