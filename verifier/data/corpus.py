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
* Hugging Face datasets, streamed: ``load_corpus("fineweb-edu")``
  (HuggingFaceFW/fineweb-edu, sample-10BT), ``"smollm"`` (HuggingFaceTB/smollm-corpus,
  cosmopedia-v2) or ``"hf:owner/name[:config]"`` (see ``HFCorpus``).

``pretokenize(corpus, split, tokenizer, cache_dir, max_tokens)`` turns any corpus into
cached memory-mapped ``TokenShards`` that the trainer samples windows from.

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

import numpy as np

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
    bounded: bool = True  # False for streamed corpora: pretokenize needs a budget

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
    if spec in HF_ALIASES:
        path, config = HF_ALIASES[spec]
        kw.setdefault("config", config)
        return HFCorpus(path, name=spec, **kw)
    rest = spec[len("hf:"):].strip()
    if not rest:
        raise CorpusError("'hf:' needs a dataset, e.g. hf:HuggingFaceFW/fineweb-edu:sample-10BT")
    path, _, config = rest.partition(":") if not Path(rest).exists() else (rest, "", "")
    if config:
        kw.setdefault("config", config)
    return HFCorpus(path, name=spec, **kw)


# -- Hugging Face datasets ----------------------------------------------------------------

_TRUE = {"1", "on", "yes", "true"}


def _hf_offline() -> bool:
    return any(os.environ.get(k, "").strip().lower() in _TRUE for k in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"))


def _probe(url: str, timeout: float) -> str | None:
    """None if a TCP connection to ``url``'s host opens within ``timeout`` seconds
    (name resolution included), else why not. Runs in a thread so it is bounded."""
    import socket
    import threading
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host, port = parts.hostname or "huggingface.co", parts.port or (80 if parts.scheme == "http" else 443)
    result: list[str | None] = ["timed out"]

    def attempt() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result[0] = None
        except OSError as exc:
            result[0] = str(exc.strerror or exc)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return result[0]


class HFCorpus(Corpus):
    """A Hugging Face dataset, streamed (``datasets``, ``streaming=True``).

    ``path`` is a Hub repository (``HuggingFaceFW/fineweb-edu``), a packaged builder
    with local ``data_files`` (``json``, ``text``, ``parquet``...), or a folder
    written by ``Dataset.save_to_disk``. The split rule, since most pretraining sets
    publish only ``train``: validation is the first ``val_docs`` documents of the
    dataset's ``hf_split`` (default ``train``), train is the rest; or pass
    ``val_split="validation"`` to use a split the dataset publishes.

    It has no local files (``files`` is empty) and is unbounded: ``pretokenize``
    needs ``max_tokens``. Its fingerprint identifies the dataset, config, revision,
    split rule and text field (plus size and mtime of local data files), not the
    streamed content. Reaching the Hub is checked first, bounded by
    ``probe_timeout`` seconds; offline (``HF_DATASETS_OFFLINE=1``, no network) the
    error is a one-line ``CorpusError``.
    """

    bounded = False

    def __init__(
        self,
        path: str,
        config: str | None = None,
        name: str | None = None,
        text_field: str = "text",
        val_docs: int = 2000,
        val_split: str | None = None,
        hf_split: str = "train",
        data_files=None,
        revision: str | None = None,
        probe_timeout: float = 5.0,
        shuffle_buffer: int = 1000,
    ):
        self.path = path
        self.config = config or None
        self.name = name or (f"hf:{path}:{config}" if config else f"hf:{path}")
        self.text_field = text_field
        self.val_docs = int(val_docs)
        self.val_split = val_split
        self.hf_split = hf_split
        self.data_files = data_files
        self.revision = revision
        self.probe_timeout = probe_timeout
        self.shuffle_buffer = shuffle_buffer
        self._fingerprints: dict[str, str] = {}

    # -- where the data lives --

    def _local_paths(self) -> list[Path]:
        found: list[Path] = []
        if Path(self.path).exists():
            root = Path(self.path)
            found += sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        files = self.data_files
        if isinstance(files, dict):
            files = [f for v in files.values() for f in ([v] if isinstance(v, str) else v)]
        elif isinstance(files, (str, os.PathLike)):
            files = [files]
        for pattern in files or []:
            found += sorted(Path(p) for p in _glob.glob(os.fspath(pattern), recursive=True))
        return found

    def _is_hub(self) -> bool:
        if Path(self.path).exists():
            return False
        try:
            from datasets.packaged_modules import _PACKAGED_DATASETS_MODULES
        except ImportError:
            return True
        return self.path not in _PACKAGED_DATASETS_MODULES

    def _unreachable(self, why: str) -> CorpusError:
        return CorpusError(
            f"can't reach Hugging Face dataset {self.path!r} ({why}): "
            "use --corpus stdlib (no download needed) or a local path"
        )

    def _open(self, hf_split: str):
        try:
            import datasets
        except ImportError:
            raise CorpusError("Hugging Face corpora need the 'datasets' package: pip install datasets") from None
        if self._is_hub() and not _hf_offline():
            endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
            proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
            why = _probe(proxy or endpoint, self.probe_timeout)
            if why:
                raise self._unreachable(f"no connection to {proxy or endpoint}: {why}")
        try:
            if Path(self.path).is_dir() and not self.data_files and (
                (Path(self.path) / "dataset_info.json").exists() or (Path(self.path) / "dataset_dict.json").exists()
            ):
                ds = datasets.load_from_disk(self.path)
                if isinstance(ds, datasets.DatasetDict):
                    if hf_split not in ds:
                        raise CorpusError(f"{self.path} has no split {hf_split!r} (it has {', '.join(ds)})")
                    ds = ds[hf_split]
                return ds.to_iterable_dataset()
            return datasets.load_dataset(
                self.path, self.config, split=hf_split, streaming=True,
                data_files=self.data_files, revision=self.revision,
            )
        except CorpusError:
            raise
        except ConnectionError as exc:
            why = "offline: HF_DATASETS_OFFLINE or HF_HUB_OFFLINE is set" if _hf_offline() else _one_line(exc)
            raise self._unreachable(why) from None
        except Exception as exc:
            raise CorpusError(f"cannot load Hugging Face dataset {self.name!r}: {_one_line(exc)}") from None

    def _stream(self, split: str, seed: int | None = None) -> Iterator[str]:
        _check_split(split)
        if self.val_split:
            ds = self._open(self.val_split if split == "validation" else self.hf_split)
        else:
            ds = self._open(self.hf_split)
            ds = ds.take(self.val_docs) if split == "validation" else ds.skip(self.val_docs)
        if seed is not None:
            ds = ds.shuffle(seed=seed, buffer_size=self.shuffle_buffer)
        try:
            for record in ds:
                if self.text_field not in record:
                    raise CorpusError(
                        f"dataset {self.name!r} has no field {self.text_field!r} "
                        f"(fields: {', '.join(record)}): pass text_field="
                    )
                text = record[self.text_field]
                if text:
                    yield str(text)
        except CorpusError:
            raise
        except ConnectionError as exc:
            raise self._unreachable(_one_line(exc)) from None
        except Exception as exc:
            raise CorpusError(f"error while streaming {self.name!r}: {_one_line(exc)}") from None

    # -- the Corpus API --

    def files(self, split: str) -> list[Path]:
        """Always empty: a streamed dataset has no local files."""
        _check_split(split)
        return []

    def iter_text(self, split: str) -> Iterator[str]:
        return self._stream(split)

    def read_bytes(self, split: str, max_bytes: int, seed: int = 0) -> bytes:
        """Documents streamed through a shuffle buffer seeded by ``seed``, joined by
        ``DOC_SEPARATOR``, cut at ``max_bytes``."""
        parts: list[bytes] = []
        total = 0
        stream = self._stream(split, seed=seed)
        for text in stream:
            if total >= max_bytes:
                break
            if parts:
                parts.append(DOC_SEPARATOR)
                total += len(DOC_SEPARATOR)
            parts.append(text.encode("utf-8"))
            total += len(parts[-1])
        stream.close()
        return b"".join(parts)[:max_bytes]

    def fingerprint(self, split: str) -> str:
        _check_split(split)
        if split not in self._fingerprints:
            h = hashlib.sha256(f"{_FORMAT}-hf\n{split}\n".encode())
            rule = f"val_split={self.val_split}" if self.val_split else f"val_docs={self.val_docs}"
            for part in (self.path, self.config, self.revision, self.hf_split, rule, self.text_field):
                h.update(f"{part}\n".encode("utf-8"))
            for path in self._local_paths():
                st = path.stat()
                h.update(f"{path.resolve()}\t{st.st_size}\t{st.st_mtime_ns}\n".encode("utf-8"))
            self._fingerprints[split] = h.hexdigest()[:16]
        return self._fingerprints[split]

    def describe(self) -> dict:
        return {"name": self.name, "kind": "huggingface", "path": self.path, "config": self.config,
                "text_field": self.text_field, "val_docs": self.val_docs, "val_split": self.val_split}


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) < 300 else text[:297] + "..."


# -- pre-tokenized shards -----------------------------------------------------------------

_SHARDS_VERSION = 1
DEFAULT_SHARD_TOKENS = 1 << 24  # 16M tokens: 32 MiB per uint16 shard


class TokenShards:
    """Pre-tokenized documents on disk: ``shard_NNNNN.bin`` files (raw uint16 or
    uint32, memory-mapped) and ``index.json``. Each document is followed by the
    tokenizer's ``eos_id``.

    ``num_bytes`` counts the UTF-8 bytes of the documents plus one per end-of-text
    (the document boundary), so with the byte tokenizer ``bytes_per_token`` is
    exactly 1; bits per byte = mean loss in nats per token / ln 2 / bytes_per_token.
    A document cut by the token budget contributes its bytes pro rata.
    """

    def __init__(self, path: Path | str):
        self.path = Path(path)
        index = _read_index(self.path)
        if index is None:
            raise CorpusError(f"{self.path} holds no complete token shards")
        self.index = index
        self.dtype = np.dtype(index["dtype"])
        self.num_tokens = int(index["num_tokens"])
        self.num_bytes = int(index["num_bytes"])
        self.num_docs = int(index["num_docs"])
        self.vocab_size = int(index["tokenizer"]["vocab_size"])
        self.eos_id = int(index["tokenizer"]["eos_id"])
        self.exhausted = bool(index["exhausted"])
        sizes = [int(s["num_tokens"]) for s in index["shards"]]
        self._offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self._maps = [
            np.memmap(self.path / s["file"], dtype=self.dtype, mode="r", shape=(int(s["num_tokens"]),))
            for s in index["shards"]
        ]

    @property
    def bytes_per_token(self) -> float:
        return self.num_bytes / self.num_tokens

    def __len__(self) -> int:
        return self.num_tokens

    def tokens(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Tokens ``[start, stop)`` of the concatenated shards (a copy only when
        the range crosses a shard boundary)."""
        stop = self.num_tokens if stop is None else min(stop, self.num_tokens)
        if not 0 <= start <= stop:
            raise IndexError(f"token range [{start}, {stop}) is outside [0, {self.num_tokens})")
        first = int(np.searchsorted(self._offsets, start, side="right")) - 1
        parts = []
        pos, i = start, first
        while pos < stop:
            lo = pos - self._offsets[i]
            hi = min(stop, self._offsets[i + 1]) - self._offsets[i]
            parts.append(self._maps[i][lo:hi])
            pos = int(self._offsets[i] + hi)
            i += 1
        if not parts:
            return np.empty(0, dtype=self.dtype)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def batch(self, batch_size: int, seq_len: int, generator=None):
        """``batch_size`` random windows of ``seq_len + 1`` tokens as an int64 torch
        tensor (inputs ``[:, :-1]``, targets ``[:, 1:]``). ``generator``: a
        ``torch.Generator``, a ``numpy.random.Generator``, an int seed, or None
        (torch's global generator)."""
        import torch

        span = seq_len + 1
        if self.num_tokens < span:
            raise CorpusError(f"{self.num_tokens} tokens are too few for windows of {span}")
        high = self.num_tokens - span + 1
        if isinstance(generator, np.random.Generator):
            starts = generator.integers(0, high, size=batch_size)
        elif isinstance(generator, (int, np.integer)):
            starts = np.random.default_rng(int(generator)).integers(0, high, size=batch_size)
        else:
            starts = torch.randint(0, high, (batch_size,), generator=generator).numpy()
        rows = np.stack([self.tokens(int(s), int(s) + span) for s in starts]).astype(np.int64)
        return torch.from_numpy(rows)

    def eval_batches(self, batch_size: int, seq_len: int, max_batches: int | None = None):
        """Consecutive windows of ``seq_len + 1`` tokens overlapping by one (each
        token is a target once), ``batch_size`` at a time, in order."""
        import torch

        starts = range(0, max(self.num_tokens - 1, 0) - seq_len + 1, seq_len)
        batch: list[np.ndarray] = []
        done = 0
        for s in starts:
            batch.append(self.tokens(s, s + seq_len + 1).astype(np.int64))
            if len(batch) == batch_size:
                yield torch.from_numpy(np.stack(batch))
                batch, done = [], done + 1
                if max_batches is not None and done >= max_batches:
                    return
        if batch:
            yield torch.from_numpy(np.stack(batch))

    def documents(self) -> Iterator[np.ndarray]:
        """The token ids of each document, without its end-of-text."""
        data = self.tokens()
        ends = np.flatnonzero(data == self.eos_id)
        start = 0
        for end in ends:
            yield data[start:end]
            start = end + 1
        if start < len(data):
            yield data[start:]

    def describe(self) -> dict:
        return {k: v for k, v in self.index.items() if k != "shards"} | {"path": str(self.path)}

    def __repr__(self) -> str:
        return f"TokenShards({self.path.name!r}, num_tokens={self.num_tokens})"


def _read_index(path: Path) -> dict | None:
    """The index of a complete shard folder, or None (missing, damaged, partial)."""
    try:
        index = json.loads((path / "index.json").read_text(encoding="utf-8"))
        if index.get("version") != _SHARDS_VERSION:
            return None
        itemsize = np.dtype(index["dtype"]).itemsize
        for shard in index["shards"]:
            if (path / shard["file"]).stat().st_size != int(shard["num_tokens"]) * itemsize:
                return None
        if sum(int(s["num_tokens"]) for s in index["shards"]) != int(index["num_tokens"]):
            return None
        return index
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _remove_stale(base: Path, prefix: str) -> None:
    """Remove temporary folders left by killed writers on this host."""
    import shutil

    host = _host()
    for tmp in base.glob(f"{prefix}*"):
        parts = tmp.name[len(prefix):].split("-")
        if len(parts) >= 3 and parts[0] == host and parts[1].isdigit() and not _pid_alive(int(parts[1])):
            shutil.rmtree(tmp, ignore_errors=True)


def _host() -> str:
    import socket

    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"


def shards_path(corpus: Corpus, split: str, tokenizer, cache_dir: Path | str | None = None,
                max_tokens: int | None = None) -> Path:
    """The folder ``pretokenize`` uses for these arguments."""
    key = hashlib.sha256(
        f"tokens-v{_SHARDS_VERSION}\n{corpus.fingerprint(split)}\n{split}\n"
        f"{tokenizer.fingerprint}\n{max_tokens}".encode()
    ).hexdigest()[:16]
    label = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{corpus.name}-{split}-{tokenizer.name}").strip("._")[-60:]
    return Path(cache_dir or default_cache_dir()) / "tokens" / f"{label}-{key}"


def pretokenize(
    corpus: Corpus,
    split: str,
    tokenizer,
    cache_dir: Path | str | None = None,
    max_tokens: int | None = None,
    progress=None,
    shard_tokens: int = DEFAULT_SHARD_TOKENS,
    batch_docs: int = 64,
) -> TokenShards:
    """Tokenize ``corpus``'s ``split`` once into memory-mapped shards under
    ``cache_dir/tokens`` (default ``$GENESYS_CACHE`` or ``~/.cache/genesys``), keyed
    by corpus fingerprint, split, tokenizer fingerprint and ``max_tokens``; later
    calls reuse them without writing. The budget ``max_tokens`` (required for
    streamed corpora) cuts the stream. ``progress(tokens_done, max_tokens)`` is
    called as it goes.

    Kill-safe: everything is written into a temporary folder (named after host and
    pid) that is renamed into place only once ``index.json`` is written, so a folder
    that looks complete always is; leftovers of dead writers are removed."""
    import secrets
    import shutil

    _check_split(split)
    if max_tokens is None and not getattr(corpus, "bounded", True):
        raise CorpusError(f"corpus {corpus.name!r} is streamed: pretokenize it with a token budget (max_tokens=)")
    if max_tokens is not None and max_tokens < 2:
        raise CorpusError(f"max_tokens must be at least 2, got {max_tokens}")
    final = shards_path(corpus, split, tokenizer, cache_dir, max_tokens)
    if _read_index(final) is not None:
        return TokenShards(final)
    base = final.parent
    base.mkdir(parents=True, exist_ok=True)
    prefix = f".{final.name}.tmp-"
    _remove_stale(base, prefix)
    tmp = base / f"{prefix}{_host()}-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        index = _write_shards(corpus, split, tokenizer, tmp, max_tokens, progress, shard_tokens, batch_docs)
        index["corpus"] = {"name": corpus.name, "split": split, "fingerprint": corpus.fingerprint(split)}
        (tmp / "index.json").write_text(json.dumps(index, indent=1), encoding="utf-8")
        if final.exists():
            if _read_index(final) is not None:  # another writer finished first
                shutil.rmtree(tmp, ignore_errors=True)
                return TokenShards(final)
            shutil.rmtree(final, ignore_errors=True)  # incomplete leftovers
        try:
            os.rename(tmp, final)
        except OSError:
            if _read_index(final) is None:
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return TokenShards(final)


def _write_shards(corpus, split, tokenizer, folder: Path, max_tokens, progress, shard_tokens, batch_docs) -> dict:
    vocab = int(tokenizer.vocab_size)
    dtype = np.dtype(np.uint16 if vocab <= 2**16 else np.uint32)
    eos = int(tokenizer.eos_id)
    buf = np.empty(shard_tokens, dtype=dtype)
    fill = 0
    shards: list[dict] = []
    total_tokens = total_bytes = num_docs = 0
    exhausted = True

    def flush() -> None:
        nonlocal fill
        if fill:
            name = f"shard_{len(shards):05d}.bin"
            with open(folder / name, "wb") as fh:
                buf[:fill].tofile(fh)
                fh.flush()
                os.fsync(fh.fileno())
            shards.append({"file": name, "num_tokens": int(fill)})
            fill = 0

    def add(ids: np.ndarray) -> None:
        nonlocal fill
        pos = 0
        while pos < len(ids):
            n = min(len(ids) - pos, shard_tokens - fill)
            buf[fill:fill + n] = ids[pos:pos + n]
            fill += n
            pos += n
            if fill == shard_tokens:
                flush()

    def encode(texts: list[str]) -> list[np.ndarray]:
        if hasattr(tokenizer, "encode_arrays"):
            return tokenizer.encode_arrays(texts)
        if hasattr(tokenizer, "encode_batch"):
            return [np.asarray(ids, dtype=np.int64) for ids in tokenizer.encode_batch(texts)]
        return [np.asarray(tokenizer.encode(t), dtype=np.int64) for t in texts]

    stream = corpus.iter_text(split)
    pending: list[str] = []
    done = False
    try:
        while not done:
            pending.clear()
            for text in stream:
                pending.append(text)
                if len(pending) >= batch_docs:
                    break
            if not pending:
                break
            encoded = encode(pending)
            for i, (text, ids) in enumerate(zip(pending, encoded)):
                doc_bytes = len(text.encode("utf-8")) + 1
                if len(ids) and (int(ids.max()) >= vocab or int(ids.min()) < 0):
                    raise CorpusError(f"tokenizer {tokenizer.name!r} produced an id outside [0, {vocab})")
                ids = np.append(np.asarray(ids, dtype=dtype), np.asarray([eos], dtype=dtype))
                if max_tokens is not None and total_tokens + len(ids) >= max_tokens:
                    keep = max_tokens - total_tokens
                    if keep < len(ids) or i + 1 < len(pending):
                        exhausted = False
                    doc_bytes = round(doc_bytes * keep / len(ids))
                    ids = ids[:keep]
                    done = True
                add(ids)
                total_tokens += len(ids)
                total_bytes += doc_bytes
                num_docs += 1
                if done:
                    break
            if progress:
                progress(total_tokens, max_tokens)
        if done and exhausted:
            exhausted = next(stream, None) is None
    finally:
        if hasattr(stream, "close"):
            stream.close()
    flush()
    if total_tokens == 0:
        raise CorpusError(f"split {split!r} of corpus {corpus.name!r} has no text")
    return {
        "version": _SHARDS_VERSION,
        "dtype": dtype.name,
        "num_tokens": total_tokens,
        "num_bytes": total_bytes,
        "num_docs": num_docs,
        "max_tokens": max_tokens,
        "exhausted": exhausted,
        "tokenizer": {"name": tokenizer.name, "vocab_size": vocab, "eos_id": eos,
                      "fingerprint": tokenizer.fingerprint},
        "shards": shards,
    }
