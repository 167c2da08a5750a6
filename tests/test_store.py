"""The knowledge store: offline indexing, retrieval quality, incremental updates, novelty, schema.

The full index (library records, seed units, seed designs, embedded with the packaged
MiniLM) is built once per test process by `shared_store()`; test_knowledge_tools.py uses
the same one. Tests that rebuild or open odd folders use a cheap word-hash embedding.
"""

import atexit
import hashlib
import json
import math
import shutil
import tempfile
import threading
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from chromadb.api.types import DefaultEmbeddingFunction, Documents, EmbeddingFunction
from chromadb.utils.embedding_functions import register_embedding_function
from chromadb.utils.embedding_functions.onnx_mini_lm_l6_v2 import ONNXMiniLM_L6_V2

from designs.seeds import load_seed
from knowledge.embeddings import EmbeddingError, MiniLMEmbedding, embedding_function
from knowledge.library import load_library
from knowledge.store import (SCHEMA_VERSION, KnowledgeStore, StoreError, design_text, load_records,
                             user_records_dir)

DATA = Path(__file__).parent / "data" / "knowledge"
N_PAPERS, N_UNITS, N_SEEDS = len(load_library()), 25, 11


class CountingMiniLM(MiniLMEmbedding):
    """The real embedding, counting the texts it embeds (Chroma calls it on upsert)."""

    def __init__(self):
        self.texts = 0

    def __call__(self, input: Documents):
        self.texts += len(input)
        return super().__call__(input)


@register_embedding_function
class WordHashEmbedding(EmbeddingFunction[Documents]):
    """A cheap deterministic embedding: hashed bag of words, unit length."""

    def __init__(self):
        pass

    def __call__(self, input: Documents):
        out = []
        for text in input:
            v = [0.0] * 64
            for word in text.lower().split():
                v[int(hashlib.md5(word.encode()).hexdigest(), 16) % 64] += 1.0
            norm = math.sqrt(sum(x * x for x in v)) or 1.0
            out.append([x / norm for x in v])
        return out

    @staticmethod
    def name():
        return "test-word-hash"

    def get_config(self):
        return {}

    @staticmethod
    def build_from_config(config):
        return WordHashEmbedding()

    def default_space(self):
        return "cosine"


def _never(self, input):
    raise AssertionError("Chroma's default (downloading) embedding function was invoked")


@pytest.fixture(scope="module", autouse=True)
def no_chroma_default():
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(DefaultEmbeddingFunction, "__call__", _never)
        mp.setattr(ONNXMiniLM_L6_V2, "__call__", _never)
        yield


@lru_cache(maxsize=1)
def shared_store() -> tuple[KnowledgeStore, object]:
    """The fully indexed store of one run directory, built once per process, and its first report."""
    run_dir = Path(tempfile.mkdtemp(prefix="genesys-knowledge-"))
    atexit.register(shutil.rmtree, run_dir, ignore_errors=True)
    store = KnowledgeStore(run_dir, embedding=CountingMiniLM())
    return store, store.index()


@pytest.fixture(scope="module")
def indexed():
    return shared_store()


@pytest.fixture(scope="module")
def store(indexed):
    return indexed[0]


def test_full_index_covers_library_units_and_seeds(indexed):
    store, report = indexed
    assert report.added == {"papers": N_PAPERS, "units": N_UNITS, "designs": N_SEEDS}
    # other test modules of this process share the store and may have archived designs in it
    counts = store.counts()
    assert (counts["papers"], counts["units"]) == (N_PAPERS, N_UNITS)
    assert len(store.collections["designs"].get(where={"source": "seed"})["ids"]) == N_SEEDS
    assert store.client.get_settings().anonymized_telemetry is False
    assert store.folder.parent == store.run_dir / "knowledge"
    marker = json.loads((store.root / "store.json").read_text())
    assert marker["schema"] == SCHEMA_VERSION and marker["dir"] == store.folder.name
    assert marker["embedding"].startswith("genesys-minilm:")


def test_chroma_rebuilds_our_embedding_from_its_config(store):
    """A collection opened without an embedding function still uses MiniLM, never Chroma's default."""
    col = store.client.get_collection("papers")
    res = col.query(query_texts=["rotary position embedding"], n_results=3)
    assert "rope-2021" in res["ids"][0]


def test_retrieval_recall_at_5(store):
    queries = json.loads((DATA / "retrieval_queries.json").read_text())
    assert len(queries) >= 20
    recalls, misses = [], []
    for q in queries:
        top = [h.id for h in store.search_library(q["query"], 5)]
        found = set(q["relevant"]) & set(top)
        recalls.append(len(found) / len(q["relevant"]))
        if len(found) < len(q["relevant"]):
            misses.append((q["query"], q["relevant"], top))
    recall = sum(recalls) / len(recalls)
    print(f"\nrecall@5 = {recall:.3f} over {len(queries)} queries; misses: {misses}")
    assert recall >= 0.8, misses


def test_hits_are_ranked_with_similarities(store):
    hits = store.search_library("gated linear attention with data-dependent decay", 5)
    assert len(hits) == 5 and all(-1.0 <= h.similarity <= 1.0 for h in hits)
    assert [h.similarity for h in hits] == sorted((h.similarity for h in hits), reverse=True)
    assert all(h.kind == "paper" and "hash" not in h.meta for h in hits)
    assert hits[0].line().startswith(f"- [{hits[0].id}] ")


def test_similar_units_finds_seed_units(store):
    assert "MHA" in [h.id for h in store.similar_units("causal multi-head softmax attention with rotary positions", 3)]
    top = [h.id for h in store.similar_units("selective state space mixer with scalar decay per head, chunked", 3)]
    assert "Mamba2Mixer" in top
    unit = store.similar_units("RMS normalization over channels", 1)[0]
    assert unit.id == "RMSNorm" and "llama" in unit.meta["seeds"]


def test_empty_query_is_a_clear_error(store):
    with pytest.raises(StoreError, match="empty query"):
        store.search_library("   ")


def test_reindexing_embeds_only_what_changed(store):
    ef = store.ef
    before = ef.texts
    report = store.index()
    assert report.embedded == 0 and ef.texts == before
    assert report.unchanged == {"papers": N_PAPERS, "units": N_UNITS, "designs": N_SEEDS}

    folder = user_records_dir(store.run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    record = load_library()["gla-2023"].model_dump() | {
        "id": "my-gated-conv-2025", "arxiv": None, "title": "A Gated Convolution Added by a User",
        "units": [], "seeds": [], "related": ["gla-2023"]}
    path = folder / "my-gated-conv-2025.json"
    path.write_text(json.dumps(record))
    try:
        report = store.index()
        assert report.added["papers"] == 1 and report.embedded == 1 and ef.texts == before + 1
        assert store.counts()["papers"] == N_PAPERS + 1
        record["title"] = "A Gated Convolution Added by a User, Revised"
        path.write_text(json.dumps(record))
        report = store.index()
        assert report.updated["papers"] == 1 and ef.texts == before + 2
    finally:
        path.unlink()
    report = store.index()
    assert report.removed["papers"] == 1 and report.embedded == 0 and ef.texts == before + 2
    assert store.counts()["papers"] == N_PAPERS


def test_malformed_user_record_is_skipped_with_a_message(store):
    folder = user_records_dir(store.run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    bad, dup = folder / "broken-2025.json", folder / "gla-copy-2023.json"
    bad.write_text('{"id": "broken-2025", "title": "x"')
    dup.write_text(json.dumps(load_library()["gla-2023"].model_dump() | {"id": "gla-copy-2023"}))
    try:
        records, problems = load_records(store.run_dir)
        report = store.index()
    finally:
        bad.unlink()
        dup.unlink()
    assert len(records) == N_PAPERS and report.embedded == 0
    assert any("broken-2025.json" in p and "unreadable JSON" in p for p in problems)
    assert any("gla-copy-2023.json" in p and "already [gla-2023]" in p for p in problems)
    assert report.problems == problems


def test_archived_designs_are_found_and_deduplicated(store):
    ef = store.ef
    designs_before = store.counts()["designs"]
    text = ("Gated linear attention whose forget gate is computed from a short causal convolution of the input, "
            "followed by a SwiGLU feed-forward; the decay is per key channel.")
    assert store.add_design("gla_convgate", text, {"title": "GLA with a conv-computed gate", "parents": ["gla"]})
    before = ef.texts
    assert not store.add_design("gla_convgate", text, {"title": "GLA with a conv-computed gate", "parents": ["gla"]})
    assert ef.texts == before  # unchanged: not embedded again
    near = store.nearest(text, k=3)
    assert near.designs[0].id == "gla_convgate" and near.designs[0].similarity > 0.99
    assert near.designs[0].meta["source"] == "archive" and json.loads(near.designs[0].meta["parents"]) == ["gla"]
    assert "gla-2023" in [h.id for h in near.papers]
    assert any(line.startswith("- design [gla_convgate]") for line in near.lines())
    assert store.index().removed["designs"] == 0  # re-indexing keeps archived designs
    assert store.counts()["designs"] == designs_before + 1


def test_nearest_of_a_tree_excludes_itself(store):
    tree = load_seed("gla")
    near = store.nearest(tree, k=3)
    assert "gla" not in [h.id for h in near.designs] and len(near.designs) == 3
    assert "gla-2023" in [h.id for h in near.papers]
    assert "GatedLinearAttention" in design_text(tree)


def test_add_design_refuses_bad_input(store):
    with pytest.raises(StoreError, match="seed design"):
        store.add_design("gla", "anything")
    with pytest.raises(StoreError, match="empty text"):
        store.add_design("blank", "  ")
    with pytest.raises(StoreError, match="needs a name"):
        store.add_design(" ", "text")


# ---------------------------------------------------------------------------- schema and rebuild


def test_older_schema_folder_is_rebuilt_not_read(tmp_path):
    root = tmp_path / "knowledge"
    old = root / "chroma"
    old.mkdir(parents=True)
    (old / "chroma.sqlite3").write_bytes(b"not a database written by this schema")
    (root / "store.json").write_text(json.dumps({"schema": SCHEMA_VERSION - 1, "dir": "chroma"}))
    with pytest.warns(UserWarning, match="rebuilding"):
        store = KnowledgeStore(tmp_path, embedding=WordHashEmbedding())
    assert not old.exists() and store.folder.exists() and store.counts() == {"papers": 0, "units": 0, "designs": 0}
    marker = json.loads((root / "store.json").read_text())
    assert marker["schema"] == SCHEMA_VERSION and marker["embedding"] == "test-word-hash:"
    report = store.index()
    assert report.added["papers"] == N_PAPERS
    reopened = KnowledgeStore(tmp_path, embedding=WordHashEmbedding())  # same rules: the same folder, as is
    assert reopened.folder == store.folder and reopened.index().embedded == 0


def test_other_embedding_means_a_fresh_store(tmp_path):
    store = KnowledgeStore(tmp_path, embedding=WordHashEmbedding())
    store.add_design("x_design", "a design")
    marker = json.loads((tmp_path / "knowledge" / "store.json").read_text())
    (tmp_path / "knowledge" / "store.json").write_text(json.dumps(marker | {"embedding": "genesys-openai:model=x"}))
    with pytest.warns(UserWarning, match="other rules"):
        again = KnowledgeStore(tmp_path, embedding=WordHashEmbedding())
    assert again.folder != store.folder and again.counts()["designs"] == 0


def test_rebuild_drops_everything_and_reindexes(tmp_path):
    store = KnowledgeStore(tmp_path, embedding=WordHashEmbedding())
    store.index()
    store.add_design("x_design", "a design of mine")
    old = store.folder
    report = store.rebuild()
    assert store.folder != old and not old.exists()
    assert report.added == {"papers": N_PAPERS, "units": N_UNITS, "designs": N_SEEDS}
    assert store.counts()["designs"] == N_SEEDS


def test_embedding_spec_from_config(monkeypatch):
    assert isinstance(embedding_function(None), MiniLMEmbedding)
    monkeypatch.setenv("GENESYS_EMBEDDING", "openai:text-embedding-3-small")
    ef = embedding_function()
    assert ef.name() == "genesys-openai" and ef.get_config() == {"model": "text-embedding-3-small"}
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(EmbeddingError, match="OPENAI_API_KEY"):
        ef(["text"])
    with pytest.raises(EmbeddingError, match="unknown embedding"):
        embedding_function("word2vec")


class _EmbeddingsStub(BaseHTTPRequestHandler):
    """An OpenAI-compatible /v1/embeddings endpoint on 127.0.0.1 (openai's client uses httpx2, not httpx)."""

    requests: list = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append((self.path, body))
        data = [{"object": "embedding", "index": i, "embedding": [0.6, 0.8] if i else [1.0, 0.0]}
                for i in range(len(body["input"]))]
        reply = json.dumps({"object": "list", "model": body["model"], "data": data,
                            "usage": {"prompt_tokens": 4, "total_tokens": 4}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


def test_openai_embedding_calls_the_api_when_configured(monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EmbeddingsStub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{server.server_port}/v1")
        monkeypatch.delenv("OPENAI_API_BASE", raising=False)
        vectors = embedding_function("openai:text-embedding-3-small")(["first text", "second text"])
    finally:
        server.shutdown()
    assert [list(map(float, v)) for v in vectors] == [[1.0, 0.0], pytest.approx([0.6, 0.8])]
    path, body = _EmbeddingsStub.requests[-1]
    assert path == "/v1/embeddings" and body["model"] == "text-embedding-3-small"
    assert body["input"] == ["first text", "second text"]
