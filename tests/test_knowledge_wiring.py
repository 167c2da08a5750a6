"""The knowledge engine inside the design graph: tools for the LLM designer, nearest designs for the
reviewer, implemented designs indexed for later sessions, and failures that never stop a session.

The designer is built by the graph from --llm flags (graph.nodes.designer_for), with
agents.llm_designer.build_models swapped for scripted chat models, so the real
knowledge tools are bound the way a hosted model gets them. The store is the real
KnowledgeStore on a cheap word-hash embedding (the MiniLM index takes a minute).
"""

from __future__ import annotations

import hashlib
import math

import pytest
from chromadb.api.types import Documents, EmbeddingFunction
from chromadb.utils.embedding_functions import register_embedding_function
from langchain_core.messages import ToolMessage

from graph import nodes
from graph.design import design_session, session_config
from graph.state import initial_state
from knowledge.store import KnowledgeStore
from tests.fake_llm import scripted
from tests.test_design_graph import CAUSAL_MLP, FAST_CHECK, code, observation, plan, proposal, review, task

LLM = ["openai:gpt-4.1"]  # any valid flag: build_models is replaced by scripted models


@register_embedding_function
class WiringWordHash(EmbeddingFunction[Documents]):
    """A cheap deterministic embedding: hashed bag of words, unit length."""

    def __init__(self):
        pass

    def __call__(self, input: Documents):
        out = []
        for text in input:
            v = [0.0] * 128
            for word in text.lower().split():
                v[int(hashlib.md5(word.encode()).hexdigest(), 16) % 128] += 1.0
            norm = math.sqrt(sum(x * x for x in v)) or 1.0
            out.append([x / norm for x in v])
        return out

    @staticmethod
    def name():
        return "test-wiring-word-hash"

    def get_config(self):
        return {}

    @staticmethod
    def build_from_config(config):
        return WiringWordHash()

    def default_space(self):
        return "cosine"


@pytest.fixture()
def run_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("GENESYS_OFFLINE", "1")  # search_papers answers "unavailable", no network
    monkeypatch.delenv("GENESYS_LLM", raising=False)
    monkeypatch.setattr(nodes, "open_store", lambda path: KnowledgeStore(path, embedding=WiringWordHash()))
    yield tmp_path / "run"
    nodes.close_archives()
    nodes._designers.clear()


def scripted_llm(monkeypatch, **roles: list[dict]) -> dict:
    """Make the graph's LLM designer run on scripted models; returns them to inspect requests."""
    models = {role: scripted(roles.get(role, []), model_name=f"fake:{role}")
              for role in ("proposer", "reviewer", "planner", "coder", "observer")}
    monkeypatch.setattr("agents.llm_designer.build_models", lambda config, env=None: models)
    return models


def run(run_dir, state: dict, thread: str, **design) -> dict:
    config = session_config(thread, run_dir=run_dir, llm=LLM, design={"check": FAST_CHECK, **design})
    with design_session(run_dir) as graph:
        graph.invoke(state, config)
        return graph.get_state(config).values


def text_of(request: dict) -> str:
    return "\n".join(str(m.content) for m in request["messages"])


def search(query: str, call_id: str) -> dict:
    return {"tool_calls": [{"name": "search_library", "args": {"query": query, "k": 3}, "id": call_id}],
            "usage": {"input": 800, "output": 40}}


def test_tools_reach_the_proposer_nearest_reaches_the_reviewer_and_designs_are_indexed(run_dir, monkeypatch):
    """Session 1 searches the library, is reviewed with its nearest designs and papers, is implemented and
    indexed; session 2's reviewer then finds session 1's design among the nearest."""
    models = scripted_llm(
        monkeypatch,
        proposer=[search("running mean of earlier tokens as context for the feed-forward layer", "call_1"),
                  proposal("Running-mean context MLP"), proposal("Running-mean context MLP, gated")],
        reviewer=[review(4.5, "accept", "cheap and causal"), review(2.0, "reject", "too close to ctx-1")],
        planner=[plan(task("GeluMLP"))], coder=[code("GeluMLP", CAUSAL_MLP)],
        observer=[observation("GeluMLP", 4, True)])
    first = run(run_dir, initial_state("mutation", ["gpt2"], name="ctx-1"), "k1")
    assert first["outcome"] == "implemented", first["reason"]

    # the proposer was given the five real tools, and the library's answer came back to it
    assert models["proposer"].requests[0]["tools"] == ["search_library", "search_papers", "get_paper",
                                                       "similar_designs", "similar_units"]
    answers = [m for m in models["proposer"].requests[1]["messages"] if isinstance(m, ToolMessage)]
    assert len(answers) == 1 and answers[0].content.startswith("Library records nearest 'running mean")
    assert "similarity" in answers[0].content and answers[0].status != "error"
    assert models["planner"].requests[0]["tools"] == ["Plan"]  # only the proposer and reviewer search

    # the reviewer saw the nearest designs and papers, the parent left out
    seen = text_of(models["reviewer"].requests[0])
    assert "## Nearest earlier designs and papers (similarity)" in seen
    lines = [ln for ln in seen.splitlines() if ln.startswith(("- design [", "- paper ["))]
    assert sum(ln.startswith("- design [") for ln in lines) == 5
    assert sum(ln.startswith("- paper [") for ln in lines) == 5
    assert not any(ln.startswith("- design [gpt2]") for ln in lines)
    assert [r["round"] for r in first["reviews"]] == [0]

    # the implemented design is in the store, described by its proposal, not by its parent's words
    store = nodes.knowledge_store({"configurable": {"run_dir": str(run_dir)}})
    stored = store.collections["designs"].get(ids=["ctx-1"], include=["metadatas", "documents"])
    assert stored["metadatas"][0]["source"] == "archive" and stored["metadatas"][0]["status"] == "implemented"
    assert stored["documents"][0].startswith("ctx-1:\n# Running-mean context MLP")
    assert "GPT-2" not in stored["documents"][0].split("\n")[0]

    second = run(run_dir, initial_state("mutation", ["gpt2"], name="ctx-2"), "k2", max_review_rounds=1)
    assert second["outcome"] == "rejected"
    nearest = text_of(models["reviewer"].requests[1])
    assert "- design [ctx-1] Running-mean context MLP" in nearest
    # the sibling line the graph adds from the archive is there too
    assert "- ctx-1 (implemented): Running-mean context MLP" in nearest


def test_knowledge_failures_are_recorded_and_the_session_goes_on(run_dir, monkeypatch):
    """A store that cannot open: no tools, no nearest, the session runs. A store whose queries fail:
    the failure is an archive event and the review goes ahead without nearest designs."""
    def broken(path):
        raise RuntimeError("chroma folder is corrupt")

    monkeypatch.setattr(nodes, "open_store", broken)
    models = scripted_llm(monkeypatch, proposer=[proposal("Context MLP"), proposal("Context MLP again")],
                          reviewer=[review(2.0, "reject", "vague"), review(2.0, "reject", "vague")])
    state = run(run_dir, initial_state("mutation", ["gpt2"], name="no-store"), "f1", max_review_rounds=1)
    assert state["outcome"] == "rejected"
    assert models["proposer"].requests[0]["tools"] == ["Proposal"]  # straight to the answer: no search tools
    assert "Nearest earlier designs" not in text_of(models["reviewer"].requests[0])

    class FailingStore(KnowledgeStore):
        def nearest(self, *args, **kwargs):
            raise RuntimeError("embedding model missing")

    nodes.close_archives()  # forget the broken store; the next one opens
    monkeypatch.setattr(nodes, "open_store", lambda path: FailingStore(path, embedding=WiringWordHash()))
    state = run(run_dir, initial_state("mutation", ["gpt2"], name="bad-query"), "f2", max_review_rounds=1,
                knowledge="on")
    assert state["outcome"] == "rejected" and state["reviews"][0]["summary"] == "vague"
    archive = nodes.archive_for({"configurable": {"run_dir": str(run_dir)}})
    events = archive.events(kind="knowledge_error", design="bad-query")
    assert len(events) == 1 and events[0].payload["step"] == "nearest-0"
    assert "embedding model missing" in events[0].payload["error"]


def test_indexing_failure_is_recorded_not_raised(run_dir):
    class NoAdd(KnowledgeStore):
        def add_design(self, *args, **kwargs):
            raise RuntimeError("disk full")

    config = {"configurable": {"run_dir": str(run_dir), "design": {"knowledge": "on"}}}
    nodes._stores[str(run_dir.absolute())] = NoAdd(run_dir, embedding=WiringWordHash())
    from designs.seeds import load_seed

    state = {"name": "d1", "session": "s1", "mode": "mutation", "parents": ["gpt2"],
             "proposal": proposal("Context MLP")["args"]}
    nodes.index_design(state, config, load_seed("gpt2"))
    events = nodes.archive_for(config).events(kind="knowledge_error", design="d1")
    assert [e.payload["step"] for e in events] == ["index"] and "disk full" in events[0].payload["error"]


def test_symbolic_runs_open_no_store_unless_one_exists_or_it_is_asked_for(run_dir):
    auto = {"configurable": {"run_dir": str(run_dir)}}
    assert nodes.designer_for(auto).name == "symbolic"
    assert nodes.knowledge_store(auto) is None and not (run_dir / "knowledge").exists()
    off = {"configurable": {"run_dir": str(run_dir), "design": {"knowledge": "off"}}}
    assert nodes.knowledge_store(off, create=True) is None
    on = {"configurable": {"run_dir": str(run_dir), "design": {"knowledge": "on"}}}
    store = nodes.knowledge_store(on)
    assert isinstance(store, KnowledgeStore) and (run_dir / "knowledge" / "store.json").is_file()
    nodes.close_archives()
    assert nodes.knowledge_store(auto) is not None  # auto: the run directory now has a store
