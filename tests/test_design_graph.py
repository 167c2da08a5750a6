"""The design graph end to end: the real graph, the real checker (sandbox), the real archive.

The designer is agents.llm_designer.LLMDesigner on LangChain chat models that replay
scripted replies (tests/fake_llm.py), so every role goes through the same prompt,
structured-output and repair path as a hosted model. Checks use fewer training steps
and no efficiency comparison (they still build, run, test causality and train).
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from agents.schemas import UnitCode, UnitTask
from designs.catalog import open_archive
from designs.seeds import load_seed
from designs.tree import TreeError
from graph import nodes
from graph.commands import design_app
from graph.design import design_session, session_config
from graph.nodes import apply_code, protected_units
from graph.state import initial_state
from tests.fake_llm import scripted

FAST_CHECK = {"efficiency": False, "train_steps": 10, "extra": {"batch_size": 4, "train_seq_len": 32}}

# ---------------------------------------------------------------- unit code the scripted coder writes

MLP = '''
import torch
from torch import nn
from torch.nn import functional as F
from designs.gau import GAUBase


class GeluMLP(GAUBase):
    """GPT-2's MLP reading the block's context: the mean of the positions so far is added to its input."""

    def __init__(self, embed_dim, block_loc, kwarg_all, device=None, dtype=None, mlp_ratio: float = 4.0,
                 mlp_bias: bool = True, **kwargs):
        self.factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__(embed_dim, block_loc, kwarg_all)
        hidden = int(mlp_ratio * embed_dim)
        self.fc1 = nn.Linear(embed_dim, hidden, bias=mlp_bias, **self.factory_kwargs)
        self.fc2 = nn.Linear(hidden, embed_dim, bias=mlp_bias, **self.factory_kwargs)

    def _forward(self, X, **Z):
        context = CONTEXT
        return self.fc2(F.gelu(self.fc1(X + context), approximate="tanh"))
'''
LEAKY_MLP = MLP.replace("CONTEXT", "X.mean(dim=1, keepdim=True)")  # every position sees the future
CAUSAL_MLP = MLP.replace("CONTEXT", "X.cumsum(dim=1) / torch.arange(1, X.shape[1] + 1, device=X.device, "
                                    "dtype=X.dtype)[None, :, None]")
SHELL_MLP = MLP.replace("import torch\n", "import torch\nimport subprocess\n").replace("CONTEXT", "0.0")

GPT2_WITH_SWIGLU = '''
from designs.gau import GAUBase


class GPT2Block(GAUBase):
    """GPT-2's block with Llama's SwiGLU in place of the GELU MLP."""

    def __init__(self, embed_dim, block_loc, kwarg_all, device=None, dtype=None, **kwargs):
        self.factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__(embed_dim, block_loc, kwarg_all)
        kw = dict(embed_dim=self.embed_dim, block_loc=self.block_loc, kwarg_all=self.kwarg_all,
                  **self.factory_kwargs, **self.kwarg_all)
        self.norm1 = LayerNorm(**kw)
        self.attn = MHA(**kw)
        self.norm2 = LayerNorm(**kw)
        self.ffn = SwiGLU(**kw)

    def _forward(self, X, **Z):
        H, Z = self.norm1(X, **Z)
        H, Z = self.attn(H, **Z)
        X = X + H
        H, Z = self.norm2(X, **Z)
        H, Z = self.ffn(H, **Z)
        return X + H, Z
'''

# ---------------------------------------------------------------- scripted replies


def usage(tokens_in: int = 900, tokens_out: int = 300) -> dict:
    return {"input": tokens_in, "output": tokens_out}


def proposal(title: str, unit: str | None = "GeluMLP", mode: str = "mutation", **more) -> dict:
    args = {"title": title, "mode": mode, "parents": [], "selected_unit": unit,
            "motivation": "GPT-2's MLP mixes channels only; each token's feed-forward sees no context.",
            "idea": "Add the running mean of the positions so far to the MLP input, a cheap causal summary.",
            "math": "c_t = (1/t) sum_{s<=t} x_s; y_t = W2 gelu(W1 (x_t + c_t))",
            "expected_effect": "lower loss early in training at no extra parameters",
            "risks": "the mean must stay causal", **more}
    return {"structured": "Proposal", "args": args, "usage": usage(1500, 600)}


def review(overall: float, verdict: str, summary: str) -> dict:
    r = int(round(overall))
    return {"structured": "Review", "usage": usage(), "args": {
        "ratings": {"novelty": r, "soundness": r, "feasibility": 5, "expected_gain": r}, "overall": overall,
        "verdict": verdict, "summary": summary, "suggestions": ["state the running mean's equation"]}}


def plan(*tasks: dict) -> dict:
    return {"structured": "Plan", "args": {"tasks": list(tasks), "notes": ""}, "usage": usage()}


def task(unit: str, action: str = "modify", source: str | None = None, description: str = "see the proposal"):
    return {"unit": unit, "action": action, "source": source, "description": description, "children": []}


def code(unit: str, source: str, *children: dict) -> dict:
    return {"structured": "UnitCode", "usage": usage(2500, 900), "args": {
        "unit": unit, "code": source, "new_children": list(children), "document": f"{unit}, rewritten",
        "rationale": "as proposed"}}


def observation(unit: str, rating: float, accept: bool, notes: str = "reads as proposed") -> dict:
    return {"structured": "Observation", "usage": usage(),
            "args": {"unit": unit, "rating": rating, "accept": accept, "notes": notes}}


def designer(**roles: list[dict]):
    """An LLMDesigner whose roles replay the given replies (roles not given are never called)."""
    from agents.llm_designer import LLMDesigner

    models = {role: scripted(roles.get(role, []), model_name=f"fake:{role}")
              for role in ("proposer", "reviewer", "planner", "coder", "observer")}
    return LLMDesigner(models, tools=[])


def run_session(run_dir, the_designer, state: dict, thread: str = "t1", **settings) -> dict:
    design = {"check": FAST_CHECK, **settings}
    with design_session(run_dir) as graph:
        graph.invoke(state, session_config(thread, designer=the_designer, run_dir=run_dir, design=design))
        return graph.get_state(session_config(thread)).values


@pytest.fixture()
def run_dir(tmp_path):
    yield tmp_path / "run"
    nodes.close_archives()


def archived(run_dir, name: str):
    archive = nodes.archive_for({"configurable": {"run_dir": str(run_dir)}})
    return archive, archive.get_design(name)


# ---------------------------------------------------------------- the sessions


def test_rejected_proposal_is_revised_then_implemented_through_the_cli(run_dir, monkeypatch):
    """Round 1 is sent back, round 2 accepted; a beam of two: the shell-importing candidate loses."""
    the_designer = designer(
        proposer=[proposal("Context MLP"), proposal("Running-mean context MLP")],
        reviewer=[review(3.0, "revise", "The context is vague: which mean, and is it causal?"),
                  review(4.5, "accept", "Causal running mean, cheap and clear.")],
        planner=[plan(task("GeluMLP"))],
        coder=[code("GeluMLP", SHELL_MLP), code("GeluMLP", CAUSAL_MLP)],
        observer=[observation("GeluMLP", 1, False, "imports subprocess"), observation("GeluMLP", 4, True)])
    monkeypatch.setattr("graph.commands._designer", lambda flags, run_dir: the_designer)
    config = run_dir.parent / "run.toml"
    config.write_text('[design]\nbeam = 2\n[design.check]\nefficiency = false\ntrain_steps = 10\n'
                      '[design.check.extra]\nbatch_size = 4\ntrain_seq_len = 32\n')
    result = CliRunner().invoke(design_app, ["--parent", "gpt2", "--run-dir", str(run_dir), "--config", str(config),
                                             "--name", "gpt2-context-mlp"])
    assert result.exit_code == 0, result.output
    assert "reviewer: 3.0/5 revise (round 1)" in result.output
    assert "reviewer: 4.5/5 accept (round 2)" in result.output
    assert "checker: GeluMLP: 1/2 passed" in result.output
    assert "implemented" in result.output
    # the reviewer's objection reached the proposer's second request
    second = the_designer.models["proposer"].requests[1]["messages"]
    assert "which mean, and is it causal" in "\n".join(str(m.content) for m in second)
    archive, record = archived(run_dir, "gpt2-context-mlp")
    assert record.status == "implemented" and record.mode == "mutation" and record.parents == ("gpt2",)
    assert [p["title"] for p in record.meta["proposals"]] == ["Context MLP", "Running-mean context MLP"]
    assert [r["verdict"] for r in record.reviews] == ["revise", "accept"]
    chosen = [a for a in record.meta["attempts"] if a["chosen"]]
    assert len(record.meta["attempts"]) == 2 and chosen[0]["ok"] and chosen[0]["rating"] == 4
    loser = next(a for a in record.meta["attempts"] if not a["chosen"])
    assert not loser["ok"] and "format.forbidden-import" in loser["summary"]
    tree = archive.load_tree_json("gpt2-context-mlp")
    assert "cumsum" in tree["units"]["GeluMLP"]["code"]
    assert tree["units"]["MHA"]["code"] == load_seed("gpt2").units["MHA"].code  # protected: untouched
    roles = archive.cost_summary("gpt2-context-mlp")
    assert roles["proposer"]["calls"] == 2 and roles["coder"]["calls"] == 2 and roles["checker"]["compute_s"] > 0


def test_causality_failure_is_fixed_after_the_checker_report(run_dir):
    the_designer = designer(
        proposer=[proposal("Context MLP")], reviewer=[review(4.2, "accept", "fine")],
        planner=[plan(task("GeluMLP"))],
        coder=[code("GeluMLP", LEAKY_MLP), code("GeluMLP", CAUSAL_MLP)],
        observer=[observation("GeluMLP", 2, False, "the mean covers future positions"),
                  observation("GeluMLP", 4, True)])
    state = run_session(run_dir, the_designer, initial_state("mutation", ["gpt2"], name="ctx"))
    assert state["outcome"] == "implemented", state["reason"]
    first, second = state["attempt_log"]
    assert not first["ok"] and "causality" in first["summary"] and second["ok"]
    retry = "\n".join(str(m.content) for m in the_designer.models["coder"].requests[1]["messages"])
    assert "causality" in retry and "the mean covers future positions" in retry
    _, record = archived(run_dir, "ctx")
    assert record.status == "implemented"


def test_unit_that_never_passes_fails_the_session_after_k_tries_with_the_tree_rolled_back(run_dir):
    the_designer = designer(
        proposer=[proposal("Context MLP")], reviewer=[review(4.2, "accept", "fine")],
        planner=[plan(task("GeluMLP"), task("LayerNorm"))],  # LayerNorm is protected: dropped from the plan
        coder=[code("MHA", CAUSAL_MLP.replace("GeluMLP", "MHA")),  # try 1: the wrong unit ...
               code("MHA", CAUSAL_MLP.replace("GeluMLP", "MHA")),  # ... again after the repair round
               code("GeluMLP", SHELL_MLP),  # try 2: a forbidden import (format check)
               {"content": "I would rather explain the idea in words first.", "usage": usage()},  # try 3: prose
               {"content": "Here is the plan in prose again.", "usage": usage()}],
        observer=[observation("GeluMLP", 1, False, "remove the subprocess import")])
    state = run_session(run_dir, the_designer, initial_state("mutation", ["gpt2"], name="never"), max_unit_tries=3)
    assert state["outcome"] == "failed"
    assert "unit GeluMLP failed 3 tries" in state["reason"]
    assert [t["unit"] for t in state["plan"]["tasks"]] == ["GeluMLP"]
    log = state["attempt_log"]
    assert [a["attempt"] for a in log] == [1, 2, 3]
    assert "coder:" in log[0]["error"] and "format.forbidden-import" in log[1]["summary"] and log[2]["error"]
    archive, record = archived(run_dir, "never")
    assert record.status == "failed" and record.meta["outcome"] == "failed"
    assert record.fingerprint == load_seed("gpt2").fingerprint()  # the working tree was rolled back
    assert "subprocess" not in archive.load_tree_json("never")["units"]["GeluMLP"]["code"]


def test_crossover_grafts_a_unit_of_the_second_parent(run_dir):
    """GPT-2's block declares SwiGLU (checked with a stand-in), then Llama's SwiGLU is grafted in."""
    the_designer = designer(
        proposer=[proposal("GPT-2 with SwiGLU", unit=None, mode="crossover")],
        reviewer=[review(4.0, "accept", "a known-good combination")],
        planner=[plan(task("GPT2Block"), task("SwiGLU", "reuse", "llama:SwiGLU"))],
        coder=[code("GPT2Block", GPT2_WITH_SWIGLU, {"name": "SwiGLU", "requirements": "gated SiLU feed-forward"})],
        observer=[observation("GPT2Block", 4, True)])
    state = run_session(run_dir, the_designer, initial_state("crossover", ["gpt2", "llama"], name="x"))
    assert state["outcome"] == "implemented", state["reason"]
    assert [(a["unit"], a["ok"]) for a in state["attempt_log"]] == [("GPT2Block", True), ("SwiGLU", True)]
    archive, record = archived(run_dir, "x")
    assert record.mode == "crossover" and record.parents == ("gpt2", "llama")
    tree = archive.load_tree_json("x")
    assert tree["units"]["SwiGLU"]["code"] == load_seed("llama").units["SwiGLU"].code
    assert "GeluMLP" not in tree["units"] and tree["units"]["SwiGLU"]["args"]["ffn_mult"] > 2


def test_budget_stops_the_session_cleanly_with_its_records(run_dir):
    the_designer = designer(proposer=[proposal("Context MLP")], reviewer=[review(4.2, "accept", "fine")])
    state = run_session(run_dir, the_designer, initial_state("mutation", ["gpt2"], name="spent"),
                        budget_tokens=3000)
    assert state["outcome"] == "budget" and "3000" in state["reason"]
    assert state["costs"]["prompt_tokens"] + state["costs"]["completion_tokens"] >= 3000
    archive, record = archived(run_dir, "spent")
    assert record.status == "failed" and record.meta["outcome"] == "budget"
    assert set(archive.cost_summary("spent")) == {"proposer", "reviewer"}
    assert the_designer.models["planner"].requests == []


def test_interrupted_session_resumes_in_a_new_process(run_dir):
    """--interactive pauses after the review; later, a fresh graph on the same checkpoints resumes with an
    edit, is killed before the checker, and a third one finishes it."""
    from langgraph.types import Command

    the_designer = designer(
        proposer=[proposal("Context MLP")], reviewer=[review(4.6, "accept", "fine")],
        planner=[plan(task("GeluMLP"))], coder=[code("GeluMLP", CAUSAL_MLP)],
        observer=[observation("GeluMLP", 4, True)])
    config = session_config("resume-me", designer=the_designer, run_dir=run_dir,
                            design={"check": FAST_CHECK, "interactive": True})
    with design_session(run_dir) as graph:
        graph.invoke(initial_state("mutation", ["gpt2"], name="resumed"), config)
        paused = graph.get_state(config)
        assert paused.next == ("human",)
        assert paused.tasks[0].interrupts[0].value["review"]["overall"] == 4.6
    with design_session(run_dir, interrupt_before=["checker"]) as graph:  # "killed" just before the check
        graph.invoke(Command(resume={"action": "edit", "proposal": {"title": "Causal context MLP"}}), config)
        assert graph.get_state(config).next == ("checker",)
    with design_session(run_dir) as graph:
        graph.invoke(None, config)
        state = graph.get_state(config).values
    assert state["outcome"] == "implemented", state["reason"]
    assert [p["title"] for p in state["proposals"]] == ["Context MLP", "Causal context MLP"]
    assert the_designer.models["coder"].position == 1  # the coder was not called again on resume
    _, record = archived(run_dir, "resumed")
    assert record.proposal["title"] == "Causal context MLP" and record.status == "implemented"


# ---------------------------------------------------------------- the graph's own guards (no checker)


def test_protected_units_are_everything_outside_the_selected_subtree():
    tree = load_seed("gpt2")
    assert protected_units(tree, "GeluMLP") == ["GPT2Block", "LayerNorm", "MHA"]
    assert protected_units(tree, "GPT2Block") == []


def test_code_for_the_wrong_or_a_protected_unit_is_refused():
    tree = load_seed("gpt2")
    mlp_task = UnitTask(unit="GeluMLP", action="modify", description="d")
    with pytest.raises(TreeError, match="task is unit 'GeluMLP'"):
        apply_code(tree, UnitCode(unit="MHA", code=CAUSAL_MLP.replace("GeluMLP", "MHA")), [], mlp_task)
    ln_task = UnitTask(unit="LayerNorm", action="modify", description="d")
    with pytest.raises(TreeError, match="protected"):
        apply_code(tree, UnitCode(unit="LayerNorm", code="class LayerNorm: pass"), ["LayerNorm"], ln_task)
    new = apply_code(tree, UnitCode(unit="GeluMLP", code=CAUSAL_MLP), ["LayerNorm"], mlp_task)
    assert "cumsum" in new.units["GeluMLP"].code and new.units["MHA"].code == tree.units["MHA"].code


def test_bad_requests_end_as_invalid_without_a_record(run_dir, monkeypatch):
    with design_session(run_dir) as graph:
        for i, state in enumerate([initial_state("mutation", ["no-such-design"]),
                                   initial_state("crossover", ["gpt2"]), initial_state("sideways", ["gpt2"])]):
            config = session_config(f"bad{i}", designer=designer(), run_dir=run_dir)
            graph.invoke(state, config)
            values = graph.get_state(config).values
            assert values["outcome"] == "invalid", values
    archive = open_archive(run_dir)
    assert all(r.mode == "seed" for r in archive.list_designs())
    archive.close()
    monkeypatch.setattr("graph.commands._designer", lambda flags, run_dir: designer())
    result = CliRunner().invoke(design_app, ["--parent", "no-such-design", "--run-dir", str(run_dir)])
    assert result.exit_code == 2 and "no design named 'no-such-design'" in result.output


@pytest.mark.slow
def test_recorded_llm_session_from_the_transcripts(run_dir):
    """The full transcript session of tests/transcripts (tools, a revision, a new child, a causality fix)."""
    from tests.fake_llm import scripted_designer

    state = run_session(run_dir, scripted_designer(), initial_state("mutation", ["gpt2"], name="gated-conv"))
    assert state["outcome"] == "implemented", state["reason"]
    assert [r["verdict"] for r in state["reviews"]] == ["revise", "accept"]
    assert [(a["unit"], a["ok"]) for a in state["attempt_log"]] == [("MHA", True), ("ShortConv", False),
                                                                   ("ShortConv", True)]
    archive, record = archived(run_dir, "gated-conv")
    assert {"MHA", "ShortConv"} <= set(archive.load_tree_json("gated-conv")["units"])
