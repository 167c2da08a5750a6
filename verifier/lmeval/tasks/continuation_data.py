"""Data of the offline lm-eval task ``genesys_continuation``, built at run time.

Each document is a piece of the held-out ("validation") split of a local corpus, by
default the embedded ``stdlib`` corpus (the running interpreter's standard-library
source, split by file): a context of about ``context_chars`` characters that ends at
a line boundary, and ``n_choices`` candidate continuations of exactly
``continuation_chars`` characters, each starting at the beginning of a line: the
true next characters of the file, and distractors cut the same way from other places
of the held-out split (another file, or the same file far from the context). The
model has to pick the true one: ``output_type: multiple_choice`` scores the summed
log-likelihood of each choice given the context (``acc``) and the same per
character (``acc_norm``; all choices have the same length, so the two agree unless
a choice's tokenization differs enough to matter). Chance is ``1 / n_choices``.

Why ``custom_dataset`` and not the ``json`` builder with ``data_files``
-----------------------------------------------------------------------
The documents depend on the interpreter's standard library, so they are generated
on the machine that evaluates, never downloaded and never shipped. A YAML
``data_files`` entry is a fixed path, while the generated file lives in the cache,
under a name keyed by the corpus fingerprint. lm-eval 0.4 has a hook for exactly
this: a task's ``custom_dataset`` is a callable (``!function`` in the YAML) that
returns the dataset; lm-eval calls it with the task's ``metadata`` and
``dataset_kwargs``. ``load_dataset`` below is that callable: it builds the documents
once, writes them to ``<cache>/lmeval/genesys_continuation-<key>.jsonl`` (``<cache>``
is ``$GENESYS_CACHE`` or ``~/.cache/genesys``; ``key`` hashes the builder version,
the parameters and the corpus fingerprint, so a different stdlib gets a different
file), and later calls read that file. The first line of the file is a header with
the corpus fingerprint and the parameters; every other line is one document.

Determinism: documents depend only on the parameters and the corpus text (numpy's
PCG64 seeded from ``doc_seed``; files in relative-path order), so the same Python
version gives the same task on every machine; the fingerprint in the header says
which corpus a result was measured on.

This module is loaded by lm-eval from its file (the YAML names it with
``!function``), and imported normally by tests as
``verifier.lmeval.tasks.continuation_data``.

Loaded inside lm-eval, it also imports ``verifier.lmeval.model``, registering the
``genesys`` model. That is what lets the harness's own command line evaluate a
checkpoint when the task is given as this YAML's path: ``lm_eval`` resolves the
``!function`` of a task given by path before it looks the model up, so

    lm_eval --model genesys --model_args checkpoint=DIR --device cpu \\
        --tasks verifier/lmeval/tasks/genesys_continuation.yaml

works with no wrapper (task names, e.g. ``--tasks genesys_continuation``, are
resolved after the model, so they need ``python -m verifier.lmeval``).
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import sys
import tempfile
import zlib
from pathlib import Path

BUILDER_VERSION = 1
TASK_NAME = "genesys_continuation"
DEFAULTS = {
    "corpus_spec": "stdlib",
    "split": "validation",
    "n_docs": 500,
    "doc_seed": 1234,
    "context_chars": 200,
    "continuation_chars": 64,
    "n_choices": 4,
}
MIN_VISIBLE = 16  # a continuation or context needs this many non-space characters


def _import_corpus():
    """verifier.data.corpus, also when lm-eval loads this file from a checkout that
    is not on sys.path (the repository root is three folders up)."""
    try:
        from verifier.data import corpus
    except ImportError:
        sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
        from verifier.data import corpus
    return corpus


def _register_model_for_harness() -> None:
    """Register ``genesys`` when lm-eval is the one loading this file (see the
    module docstring); any failure only leaves the model unregistered."""
    if "lm_eval" not in sys.modules:
        return
    try:
        _import_corpus()  # puts the repository on sys.path when needed
        import verifier.lmeval.model  # noqa: F401
    except Exception as exc:  # pragma: no cover - reported by lm-eval as an unknown model
        import logging

        logging.getLogger(__name__).warning("genesys model not registered: %s", exc)


_register_model_for_harness()


def _params(**kw) -> dict:
    unknown = set(kw) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"{TASK_NAME}: unknown parameters {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    params = {**DEFAULTS, **kw}
    for key in ("n_docs", "context_chars", "continuation_chars", "n_choices"):
        params[key] = int(params[key])
        if params[key] < 1:
            raise ValueError(f"{TASK_NAME}: {key} must be >= 1, got {params[key]}")
    if params["n_choices"] < 2:
        raise ValueError(f"{TASK_NAME}: n_choices must be >= 2")
    params["doc_seed"] = int(params["doc_seed"])
    return params


def _visible(text: str) -> int:
    return sum(1 for ch in text if not ch.isspace())


def _line_starts(text: str) -> list[int]:
    starts = [0]
    pos = text.find("\n")
    while pos != -1:
        starts.append(pos + 1)
        pos = text.find("\n", pos + 1)
    return starts


def _cut_points(text: str, starts: list[int], context_chars: int, cont_chars: int) -> list[int]:
    """Line starts where a document can be cut: enough context before, a full
    continuation after, both with visible text."""
    out = []
    for c in starts:
        if c < context_chars // 2 or c + cont_chars > len(text):
            continue
        cont = text[c:c + cont_chars]
        if "\x00" in cont or _visible(cont) < MIN_VISIBLE:
            continue
        out.append(c)
    return out


def _context(text: str, starts: list[int], c: int, context_chars: int) -> str:
    """The lines before ``c`` that fit in ``context_chars`` (the text from the first
    line start at or after ``c - context_chars``), or the last ``context_chars``
    characters when no line start falls in that range."""
    lo = max(0, c - context_chars)
    i = bisect.bisect_left(starts, lo)
    start = starts[i] if i < len(starts) and starts[i] < c else lo
    return text[start:c]


def build_documents(corpus=None, **kw) -> tuple[dict, list[dict]]:
    """(header, documents) for these parameters; ``corpus`` defaults to
    ``load_corpus(corpus_spec)``."""
    import numpy as np

    params = _params(**kw)
    if corpus is None:
        corpus = _import_corpus().load_corpus(params["corpus_spec"])
    split = params["split"]
    ctx_chars, cont_chars, k = params["context_chars"], params["continuation_chars"], params["n_choices"]
    files = []  # (relative name, text, line starts, cut points)
    for i, text in enumerate(corpus.iter_text(split)):
        starts = _line_starts(text)
        cuts = _cut_points(text, starts, ctx_chars, cont_chars)
        if cuts:
            files.append((_doc_name(corpus, split, i), text, starts, cuts))
    if len(files) < 1 or sum(len(f[3]) for f in files) < k + 1:
        raise ValueError(f"{TASK_NAME}: the {split} split of corpus {corpus.name!r} is too small for documents")
    rng = np.random.default_rng([params["doc_seed"], zlib.crc32(TASK_NAME.encode())])
    used: set[tuple[int, int]] = set()
    docs: list[dict] = []
    attempts = 0
    max_attempts = 50 * params["n_docs"] + 1000
    while len(docs) < params["n_docs"] and attempts < max_attempts:
        attempts += 1
        fi = int(rng.integers(len(files)))
        name, text, starts, cuts = files[fi]
        c = cuts[int(rng.integers(len(cuts)))]
        if (fi, c) in used:
            continue
        context = _context(text, starts, c, ctx_chars)
        if _visible(context) < MIN_VISIBLE or "\x00" in context:
            continue
        truth = text[c:c + cont_chars]
        choices = [truth]
        sources = [(fi, c)]
        tries = 0
        while len(choices) < k and tries < 100:
            tries += 1
            fj = int(rng.integers(len(files)))
            _, other, _, other_cuts = files[fj]
            d = other_cuts[int(rng.integers(len(other_cuts)))]
            if fj == fi and abs(d - c) < ctx_chars + cont_chars:
                continue  # too close to the document itself
            cand = other[d:d + cont_chars]
            if cand in choices:
                continue
            choices.append(cand)
            sources.append((fj, d))
        if len(choices) < k:
            continue
        used.add((fi, c))
        label = int(rng.integers(k))
        distractors = choices[1:]
        ordered = distractors[:label] + [truth] + distractors[label:]
        docs.append({
            "id": len(docs),
            "context": context,
            "choices": ordered,
            "label": label,
            "source": f"{name}:{c}",
        })
    if len(docs) < params["n_docs"]:
        raise ValueError(
            f"{TASK_NAME}: only {len(docs)} of {params['n_docs']} documents could be cut from the "
            f"{split} split of corpus {corpus.name!r}; ask for fewer (n_docs)"
        )
    header = {
        "task": TASK_NAME,
        "builder_version": BUILDER_VERSION,
        "params": params,
        "corpus": corpus.name,
        "corpus_fingerprint": corpus.fingerprint(split),
        "python": "%d.%d.%d" % sys.version_info[:3],
        "n_docs": len(docs),
    }
    return header, docs


def _doc_name(corpus, split: str, i: int) -> str:
    try:
        path = corpus.files(split)[i]
        return Path(path).resolve().relative_to(Path(corpus.root).resolve()).as_posix()
    except Exception:
        return f"doc{i}"


def cache_path(corpus=None, cache_dir: str | Path | None = None, **kw) -> Path:
    """Where the documents for these parameters are cached."""
    params = _params(**kw)
    corpus_mod = _import_corpus()
    if corpus is None:
        corpus = corpus_mod.load_corpus(params["corpus_spec"])
    key = hashlib.sha256(
        json.dumps({"v": BUILDER_VERSION, "params": params, "fp": corpus.fingerprint(params["split"])},
                   sort_keys=True).encode()
    ).hexdigest()[:16]
    base = Path(cache_dir) if cache_dir else corpus_mod.default_cache_dir()
    return base / "lmeval" / f"{TASK_NAME}-{key}.jsonl"


def _read(path: Path) -> tuple[dict, list[dict]] | None:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
        header = json.loads(lines[0])["header"]
        docs = [json.loads(line) for line in lines[1:]]
        if len(docs) != header["n_docs"]:
            return None
        return header, docs
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None


def _write(path: Path, header: dict, docs: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(json.dumps({"header": header}, ensure_ascii=False) + "\n")
            for doc in docs:
                fh.write(json.dumps(doc, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def documents(cache_dir: str | Path | None = None, **kw) -> tuple[dict, list[dict], Path]:
    """(header, documents, cache file): read from the cache, or built and cached."""
    params = _params(**kw)
    corpus = _import_corpus().load_corpus(params["corpus_spec"])
    path = cache_path(corpus, cache_dir, **params)
    cached = _read(path)
    if cached is not None:
        return cached[0], cached[1], path
    header, docs = build_documents(corpus, **params)
    _write(path, header, docs)
    return header, docs, path


def load_dataset(**kwargs):
    """lm-eval's ``custom_dataset`` hook: a ``DatasetDict`` with a ``test`` split.

    lm-eval passes the task's ``metadata`` (its ``version``, and model arguments or
    ``--metadata`` given on the command line) together with ``dataset_kwargs``;
    only the keys of ``DEFAULTS`` (and ``cache_dir``) are used, the rest ignored."""
    import datasets

    own = {k: v for k, v in kwargs.items() if k in DEFAULTS}
    header, docs, _ = documents(cache_dir=kwargs.get("cache_dir"), **own)
    rows = [{"context": d["context"], "choices": d["choices"], "label": d["label"], "source": d["source"]}
            for d in docs]
    features = datasets.Features({
        "context": datasets.Value("string"),
        "choices": datasets.List(datasets.Value("string")),
        "label": datasets.Value("int64"),
        "source": datasets.Value("string"),
    })
    test = datasets.Dataset.from_list(rows, features=features)
    return datasets.DatasetDict({"test": test})
