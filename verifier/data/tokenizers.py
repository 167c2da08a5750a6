"""Tokenizers for the verifier: byte-level (the CPU default), BPE trained on the corpus
with the ``tokenizers`` library and cached, or a named Hugging Face tokenizer.

Every tokenizer has ``name``, ``vocab_size``, ``eos_id``, a ``fingerprint`` (16 hex
digits that change whenever the mapping from text to ids changes), ``encode(text)``
and ``decode(ids)``. ``decode(encode(text)) == text`` for any text, for all of them
except Hugging Face tokenizers that normalize text.

``ByteTokenizer`` has vocabulary 256 (the UTF-8 bytes; ``DesignLM``'s default vocab)
and uses byte 0 (NUL) as end-of-text: text corpora never contain NUL, and it is the
separator corpora put between documents (``corpus.DOC_SEPARATOR``). So a NUL inside a
text is indistinguishable from a document boundary, which is harmless for text.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from verifier.data.corpus import default_cache_dir

if TYPE_CHECKING:  # pragma: no cover
    from verifier.data.corpus import Corpus

EOT_TOKEN = "<|endoftext|>"
_EOS_CANDIDATES = (EOT_TOKEN, "</s>", "<eos>", "<|eos|>", "<|end_of_text|>", "[SEP]")


class TokenizerError(Exception):
    """A tokenizer can't be built or found. The message says what to do."""


def _short_hash(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode("utf-8") if isinstance(part, str) else part)
        h.update(b"\x00")
    return h.hexdigest()[:16]


class Tokenizer:
    """The interface every tokenizer offers."""

    name: str
    vocab_size: int
    eos_id: int
    fingerprint: str

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def decode(self, ids: Iterable[int]) -> str:
        raise NotImplementedError

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def encode_array(self, text: str) -> np.ndarray:
        """``encode`` as a 1-D integer array."""
        return np.asarray(self.encode(text), dtype=np.int64)

    def encode_arrays(self, texts: Sequence[str]) -> list[np.ndarray]:
        """``encode_batch`` as arrays: what ``pretokenize`` calls."""
        return [np.asarray(ids, dtype=np.int64) for ids in self.encode_batch(texts)]

    @property
    def dtype(self) -> np.dtype:
        """The smallest unsigned dtype that holds every id."""
        return np.dtype(np.uint16 if self.vocab_size <= 2**16 else np.uint32)

    def describe(self) -> dict:
        return {"name": self.name, "vocab_size": self.vocab_size, "eos_id": self.eos_id,
                "fingerprint": self.fingerprint}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, vocab_size={self.vocab_size})"


class ByteTokenizer(Tokenizer):
    """UTF-8 bytes; vocabulary 256; end-of-text is byte 0 (see the module docstring)."""

    name = "byte"
    vocab_size = 256
    eos_id = 0
    fingerprint = _short_hash("genesys-byte-tokenizer-v1", "utf-8", "vocab=256", "eos=0")

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def encode_array(self, text: str) -> np.ndarray:
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)

    def encode_arrays(self, texts: Sequence[str]) -> list[np.ndarray]:
        return [self.encode_array(t) for t in texts]

    def decode(self, ids: Iterable[int]) -> str:
        if isinstance(ids, np.ndarray):
            data = ids.astype(np.uint8).tobytes()
        else:
            data = bytes(int(i) for i in ids)
        return data.decode("utf-8", errors="replace")


class TokenizersTokenizer(Tokenizer):
    """A ``tokenizers.Tokenizer`` (trained BPE, or a tokenizer.json from the Hub)."""

    def __init__(self, tokenizer, name: str):
        self._tok = tokenizer
        self.name = name
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
        eos = next((tokenizer.token_to_id(t) for t in _EOS_CANDIDATES if tokenizer.token_to_id(t) is not None), None)
        if eos is None:
            raise TokenizerError(f"tokenizer {name!r} has no end-of-text token (looked for {', '.join(_EOS_CANDIDATES)})")
        self.eos_id = eos
        self.fingerprint = _short_hash("tokenizers", tokenizer.to_str())

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=False)

    def save(self, path: Path) -> None:
        _atomic_write_text(Path(path), self._tok.to_str())


class TransformersTokenizer(Tokenizer):
    """A ``transformers`` tokenizer found locally (never downloaded here)."""

    def __init__(self, tokenizer, name: str):
        self._tok = tokenizer
        self.name = name
        self.vocab_size = len(tokenizer)
        eos = tokenizer.eos_token_id
        if eos is None:
            eos = next((tokenizer.convert_tokens_to_ids(t) for t in _EOS_CANDIDATES if t in tokenizer.get_vocab()), None)
        if eos is None:
            raise TokenizerError(f"tokenizer {name!r} has no end-of-text token")
        self.eos_id = int(eos)
        vocab = json.dumps(sorted(tokenizer.get_vocab().items()), ensure_ascii=False)
        self.fingerprint = _short_hash("transformers", type(tokenizer).__name__, vocab)

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False))

    def decode(self, ids: Iterable[int]) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=False,
                                clean_up_tokenization_spaces=False)


# -- BPE trained on a corpus --------------------------------------------------------------


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _require_tokenizers():
    try:
        import tokenizers
    except ImportError:  # pragma: no cover - it is a pinned dependency
        raise TokenizerError("BPE needs the 'tokenizers' package: pip install tokenizers") from None
    return tokenizers


def _limited(texts: Iterable[str], max_bytes: int | None) -> Iterable[str]:
    total = 0
    for text in texts:
        if max_bytes is not None and total >= max_bytes:
            return
        yield text
        total += len(text.encode("utf-8"))


def bpe_cache_path(corpus: "Corpus", split: str, vocab_size: int, cache_dir: Path | str | None = None,
                   max_train_bytes: int | None = None, min_frequency: int = 2) -> Path:
    """Where ``train_bpe`` keeps the tokenizer for these arguments."""
    key = _short_hash("bpe-v1", corpus.fingerprint(split), split, str(vocab_size), str(max_train_bytes), str(min_frequency))
    return Path(cache_dir or default_cache_dir()) / "tokenizers" / f"bpe-{vocab_size}-{key}.json"


def train_bpe(
    corpus: "Corpus",
    split: str = "train",
    vocab_size: int = 4096,
    cache_dir: Path | str | None = None,
    max_train_bytes: int | None = None,
    min_frequency: int = 2,
    progress: Callable[[str], None] | None = None,
) -> TokenizersTokenizer:
    """A byte-level BPE (GPT-2 style pre-tokenization, ``<|endoftext|>`` = id 0) trained
    on ``corpus``'s ``split`` (the first ``max_train_bytes`` of it when given), cached
    under ``cache_dir/tokenizers`` by (corpus fingerprint, split, vocab size, limits):
    a second call loads the file instead of training."""
    tk = _require_tokenizers()
    if vocab_size < 257 + 1:
        raise TokenizerError(f"BPE vocab_size must be at least 258 (256 bytes + end-of-text + a merge), got {vocab_size}")
    path = bpe_cache_path(corpus, split, vocab_size, cache_dir, max_train_bytes, min_frequency)
    name = f"bpe:{vocab_size}"
    if path.is_file():
        try:
            return TokenizersTokenizer(tk.Tokenizer.from_file(str(path)), name)
        except Exception:  # a damaged cache file: train again
            path.unlink(missing_ok=True)
    tok = tk.Tokenizer(tk.models.BPE())
    tok.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tk.decoders.ByteLevel()
    trainer = tk.trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[EOT_TOKEN],
        initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    start = time.perf_counter()
    if progress:
        progress(f"training BPE vocab {vocab_size} on {corpus.name} ({split})")
    tok.train_from_iterator(_limited(corpus.iter_text(split), max_train_bytes), trainer)
    result = TokenizersTokenizer(tok, name)
    result.save(path)
    if progress:
        progress(f"trained BPE vocab {result.vocab_size} in {time.perf_counter() - start:.1f}s -> {path}")
    return result


# -- Hugging Face tokenizers by name ------------------------------------------------------


def hf_tokenizer(name: str) -> Tokenizer:
    """A Hugging Face tokenizer available on this machine, never downloaded: a
    ``tokenizer.json`` path (or a folder holding one), a model found by
    ``transformers`` in its local cache, or a ``tokenizer.json`` in the Hub cache."""
    tk = _require_tokenizers()
    path = Path(name).expanduser()
    if path.is_dir() and (path / "tokenizer.json").is_file():
        path = path / "tokenizer.json"
    if path.is_file():
        try:
            return TokenizersTokenizer(tk.Tokenizer.from_file(str(path)), f"hf:{name}")
        except TokenizerError:
            raise
        except Exception as exc:
            raise TokenizerError(f"cannot load tokenizer file {path}: {exc}") from None
    problems = []
    try:
        from transformers import AutoTokenizer  # optional, never a dependency
    except ImportError:
        problems.append("transformers is not installed")
    else:
        try:
            return TransformersTokenizer(AutoTokenizer.from_pretrained(name, local_files_only=True), f"hf:{name}")
        except TokenizerError:
            raise
        except Exception as exc:
            problems.append(f"transformers found no local copy ({type(exc).__name__})")
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        problems.append("huggingface_hub is not installed")
    else:
        cached = try_to_load_from_cache(name, "tokenizer.json")
        if isinstance(cached, str) and Path(cached).is_file():
            return TokenizersTokenizer(tk.Tokenizer.from_file(cached), f"hf:{name}")
        problems.append("no tokenizer.json in the Hugging Face cache")
    raise TokenizerError(
        f"Hugging Face tokenizer {name!r} is not available locally ({'; '.join(problems)}): "
        "download it first (e.g. huggingface-cli download NAME tokenizer.json), pass a path "
        "to a tokenizer.json, or use --tokenizer byte / bpe:4096"
    )


_BPE_SPEC = re.compile(r"^bpe(?::(\d+))?$")


def load_tokenizer(spec: str = "byte", corpus: "Corpus | None" = None, cache_dir: Path | str | None = None,
                   **kw) -> Tokenizer:
    """``"byte"`` (default), ``"bpe:4096"`` (trained on ``corpus``'s train split and
    cached; ``"bpe"`` means 4096), or ``"hf:NAME"`` (a local Hugging Face tokenizer).
    Extra keywords go to ``train_bpe``."""
    spec = (spec or "byte").strip()
    if spec == "byte":
        return ByteTokenizer()
    match = _BPE_SPEC.match(spec)
    if match:
        if corpus is None:
            raise TokenizerError(f"tokenizer {spec!r} is trained on a corpus: pass corpus=")
        return train_bpe(corpus, vocab_size=int(match.group(1) or 4096), cache_dir=cache_dir, **kw)
    if spec.startswith("hf:") and len(spec) > 3:
        return hf_tokenizer(spec[3:])
    raise TokenizerError(f"unknown tokenizer {spec!r}: use byte, bpe:VOCAB (e.g. bpe:4096) or hf:NAME")
