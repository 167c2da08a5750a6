"""The agent benchmark: the paper's table, the ablations through the real graph, the command.

Sessions run on the real graph, checker and archive with scripted chat models
(tests/fake_llm.py via tests/test_design_graph.py's helpers) and the tests' quick
check settings; each test spends at most two checker runs.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from graph import nodes
from graph.benchmark import (STARTS, STARTS_VERSION, Backend, BenchmarkError, SessionResult, Start, code_lines,
                             resolve_backend, run_series, starting_points, summarize, table_text)
from graph.benchmark_commands import benchmark_app
from graph.configuration import DesignConfig
from graph.nodes import DIRECT_TASK
from graph.state import initial_state
from tests.test_design_graph import (CAUSAL_MLP, SHELL_MLP, code, designer, observation, plan,
                                     proposal, review, run_session, task)

# GPT-2's block written as one unit: the direct ablation's answer (helpers are plain nn.Modules).
WHOLE_GPT2 = '''
import torch
from torch import nn
from torch.nn import functional as F
from designs.gau import GAUBase


class CausalSelfAttention(nn.Module):
    """Multi-head causal softmax attention on [B, T, D]."""

    def __init__(self, dim, n_heads, device=None, dtype=None):
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(dim, 3 * dim, device=device, dtype=dtype)
        self.out = nn.Linear(dim, dim, device=device, dtype=dtype)

    def forward(self, x):
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out(y.transpose(1, 2).reshape(B, T, D))


class GPT2Block(GAUBase):
    """GPT-2's block in one piece: pre-norm causal attention, then a GELU MLP, with residuals."""

    def __init__(self, embed_dim, block_loc, kwarg_all, device=None, dtype=None, n_heads: int = 4,
                 mlp_ratio: float = 4.0, **kwargs):
        self.factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__(embed_dim, block_loc, kwarg_all)
        self.norm1 = nn.LayerNorm(embed_dim, **self.factory_kwargs)
        self.attn = CausalSelfAttention(embed_dim, n_heads, **self.factory_kwargs)
        self.norm2 = nn.LayerNorm(embed_dim, **self.factory_kwargs)
        self.fc1 = nn.Linear(embed_dim, int(mlp_ratio * embed_dim), **self.factory_kwargs)
        self.fc2 = nn.Linear(int(mlp_ratio * embed_dim), embed_dim, **self.factory_kwargs)

    def _forward(self, X, **Z):
        X = X + self.attn(self.norm1(X))
        return X + self.fc2(F.gelu(self.fc1(self.norm2(X)), approximate="tanh"))
'''


@pytest.fixture()
def run_dir(tmp_path):
    yield tmp_path / "run"
    nodes.close_archives()


def text_of(request: dict) -> str:
    return "\n".join(str(m.content) for m in request["messages"])


def result(index: int, outcome: str, tries: int = 0, loc: int = 0, dollars: float = 0.0, tokens: int = 0,
           checker_s: float = 0.0, wall_s: float = 10.0) -> SessionResult:
    return SessionResult(index=index, mode="mutation", parents=["gpt2"], name=f"d{index}", outcome=outcome,
                         reason="", tries=tries, loc=loc, dollars=dollars, tokens=tokens, checker_s=checker_s,
                         wall_s=wall_s)


# ---------------------------------------------------------------- the table (no sessions)


def test_table_rates_tries_cost_and_loc_per_valid_design():
    results = [result(0, "implemented", tries=2, loc=30, dollars=0.10, tokens=5000, checker_s=20),
               result(1, "implemented", tries=4, loc=50, dollars=0.30, tokens=9000, checker_s=40),
               result(2, "rejected", dollars=0.05, tokens=1000),
               result(3, "failed", tries=5, loc=0, dollars=0.15, tokens=5000, checker_s=60)]
    row = summarize("openai:gpt-4.1", "full", results)
    assert (row.sessions, row.valid, row.rejected, row.failed) == (4, 2, 1, 1)
    assert row.valid_rate == 0.5
    assert row.tries_per_valid == 3.0  # the failed session's 5 tries count in no valid design
    assert row.dollars_per_valid == pytest.approx(0.30)  # all spending, per valid design
    assert row.loc_per_valid == 40 and row.tokens_per_session == 5000 and row.checker_s_per_session == 30
    none = summarize("symbolic", "direct", [result(0, "failed", tries=5), result(1, "budget")])
    assert none.valid_rate == 0 and none.tries_per_valid is None and none.loc_per_valid is None
    assert none.failed == 2
    text = table_text([row, none]).splitlines()
    assert text[0].split()[:4] == ["backend", "ablation", "sessions", "valid"]
    assert "50% (2)" in text[2] and "0.3000" in text[2] and text[3].split()[7] == "-"


def test_starting_points_are_fixed_versioned_and_cycle_with_new_seeds():
    assert STARTS_VERSION and len(STARTS) == 20 and len(set(STARTS)) == 20
    first = starting_points(5)
    assert {s.mode for s in first} == {"mutation", "crossover", "scratch"}
    longer = starting_points(22)
    assert longer[:20] == list(STARTS) and longer[20] == Start("mutation", ("gpt2",), 1000)
    with pytest.raises(BenchmarkError):
        starting_points(0)
    assert code_lines('"""doc"""\n# comment\n\nx = 1\n\n\ny = 2  # two\n') == 2


# ---------------------------------------------------------------- the ablations through the real graph


@pytest.mark.slow  # a real check per try; the no-observer ablation stays in the default run
def test_direct_ablation_writes_the_whole_block_in_one_unit(run_dir):
    """One coder call per try writes the block; declaring a child is refused (retried as a whole)."""
    the_designer = designer(
        proposer=[proposal("GPT-2 rewritten whole")], reviewer=[review(4.0, "accept", "fine")],
        coder=[code("GPT2Block", WHOLE_GPT2, {"name": "CausalSelfAttention", "requirements": "attention"}),
               code("GPT2Block", WHOLE_GPT2)],
        observer=[observation("GPT2Block", 4, True)])
    state = run_session(run_dir, the_designer, initial_state("mutation", ["gpt2"], name="whole"), direct=True)
    assert state["outcome"] == "implemented", state["reason"]
    assert the_designer.models["planner"].requests == []  # no planner in direct generation
    assert [t["unit"] for t in state["plan"]["tasks"]] == ["GPT2Block"] and state["protected"] == []
    first, second = state["attempt_log"]
    assert "whole block in one unit" in first["error"] and second["ok"] and second["unit"] == "GPT2Block"
    prompt = text_of(the_designer.models["coder"].requests[0])
    assert DIRECT_TASK.split(":")[0] in prompt and "class MHA(GAUBase)" in prompt  # the parent's block, whole
    assert "declares children CausalSelfAttention" in text_of(the_designer.models["coder"].requests[1])
    _, record = archived(run_dir, "whole")
    tree = nodes.archive_for({"configurable": {"run_dir": str(run_dir)}}).load_tree_json("whole")
    assert list(tree["units"]) == ["GPT2Block"] and record.status == "implemented"


@pytest.mark.slow  # a real check per try; the no-observer ablation stays in the default run
def test_no_planner_ablation_codes_the_selected_unit_from_the_proposal(run_dir):
    the_designer = designer(
        proposer=[proposal("Running-mean context MLP")], reviewer=[review(4.5, "accept", "fine")],
        coder=[code("GeluMLP", CAUSAL_MLP)], observer=[observation("GeluMLP", 4, True)])
    state = run_session(run_dir, the_designer, initial_state("mutation", ["gpt2"], name="np"), use_planner=False)
    assert state["outcome"] == "implemented", state["reason"]
    assert the_designer.models["planner"].requests == []
    assert [(t["unit"], t["action"]) for t in state["plan"]["tasks"]] == [("GeluMLP", "modify")]
    assert "No planner" in state["plan"]["notes"]
    assert "## Your task: GeluMLP (modify)\n\nAdd the running mean" in text_of(the_designer.models["coder"].requests[0])


def test_no_observer_ablation_accepts_by_the_checker_alone(run_dir):
    """Try 1 fails the (cheap) format check, try 2 passes: no observer call, no rating, accepted."""
    the_designer = designer(
        proposer=[proposal("Running-mean context MLP")], reviewer=[review(4.5, "accept", "fine")],
        planner=[plan(task("GeluMLP"))], coder=[code("GeluMLP", SHELL_MLP), code("GeluMLP", CAUSAL_MLP)])
    state = run_session(run_dir, the_designer, initial_state("mutation", ["gpt2"], name="no"), use_observer=False)
    assert state["outcome"] == "implemented", state["reason"]
    assert the_designer.models["observer"].requests == []
    first, second = state["attempt_log"]
    assert not first["ok"] and "forbidden-import" in first["summary"]
    assert second["ok"] and second["accept"] and second["rating"] is None
    retry = text_of(the_designer.models["coder"].requests[1])
    assert "forbidden-import" in retry and "Try 1: observer" not in retry
    assert "observer" not in state["costs"]["roles"]


def archived(run_dir, name):
    archive = nodes.archive_for({"configurable": {"run_dir": str(run_dir)}})
    return archive, archive.get_design(name)


# ---------------------------------------------------------------- series, resume and the command


def test_benchmark_command_prints_the_table_and_resumes(tmp_path, monkeypatch):
    """Two sessions (gpt2 implemented, llama rejected); run again, nothing is re-run."""
    the_designer = designer(
        proposer=[proposal("Running-mean context MLP"), proposal("Wider SwiGLU", unit="SwiGLU")],
        reviewer=[review(4.5, "accept", "fine"), review(2.0, "reject", "a known result")],
        planner=[plan(task("GeluMLP"))], coder=[code("GeluMLP", CAUSAL_MLP)],
        observer=[observation("GeluMLP", 4, True)])
    monkeypatch.setattr("graph.benchmark_commands.resolve_backend",
                        lambda spec: Backend("scripted", designer=the_designer))
    config = tmp_path / "bench.toml"
    config.write_text("[design]\nmax_review_rounds = 1\n")
    out = tmp_path / "table.json"
    args = ["agents", "--llm", "fake:scripted", "--n", "2", "--run-dir", str(tmp_path / "bench"), "--config",
            str(config), "--fast-check", "--json", str(out)]
    first = CliRunner().invoke(benchmark_app, args)
    assert first.exit_code == 0, first.output
    assert "implemented" in first.output and "rejected" in first.output
    assert "tries/valid" in first.output and "50% (1)" in first.output  # the plain table (narrow console)
    rows = json.loads(out.read_text())
    assert rows["version"] == STARTS_VERSION
    row = rows["rows"][0]
    assert (row["backend"], row["ablation"], row["sessions"], row["valid"], row["rejected"]) == \
        ("scripted", "full", 2, 1, 1)
    assert row["tries_per_valid"] == 1 and row["loc_per_valid"] == code_lines(CAUSAL_MLP)
    assert row["tokens_per_session"] > 0 and row["dollars_per_valid"] == 0  # fake models have no price
    series = tmp_path / "bench" / "scripted--full"
    assert len((series / "sessions.jsonl").read_text().splitlines()) == 2
    calls = the_designer.models["proposer"].position
    again = CliRunner().invoke(benchmark_app, args)
    assert again.exit_code == 0, again.output
    assert the_designer.models["proposer"].position == calls  # read back, not re-run
    assert json.loads(out.read_text())["rows"] == rows["rows"]


def test_series_refuses_other_settings_and_symbolic_direct(tmp_path, monkeypatch):
    backend = Backend("scripted", designer=designer())
    (tmp_path / "b" / "scripted--full").mkdir(parents=True)
    (tmp_path / "b" / "scripted--full" / "benchmark.json").write_text(json.dumps({"version": "old"}))
    with pytest.raises(BenchmarkError, match="another --run-dir"):
        run_series(tmp_path / "b", backend, "full", 1)
    with pytest.raises(BenchmarkError, match="unknown ablation"):
        run_series(tmp_path / "b", backend, "sideways", 1)
    symbolic = resolve_backend("none")
    assert symbolic.label == "symbolic" and symbolic.symbolic
    with pytest.raises(BenchmarkError, match="cannot write a whole block"):
        run_series(tmp_path / "b", symbolic, "direct", 1)
    result = CliRunner().invoke(benchmark_app, ["agents", "--llm", "none", "--ablation", "direct", "--n", "1",
                                                "--run-dir", str(tmp_path / "b")])
    assert result.exit_code == 2 and "skipped" in result.output and "no series ran" in result.output
    bad = CliRunner().invoke(benchmark_app, ["agents", "--ablation", "sideways", "--run-dir", str(tmp_path / "b")])
    assert bad.exit_code == 2 and "unknown ablation(s) sideways" in bad.output
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    nokey = CliRunner().invoke(benchmark_app, ["agents", "--llm", "openai:gpt-4.1", "--run-dir", str(tmp_path / "b")])
    assert nokey.exit_code == 2 and "OPENAI_API_KEY" in nokey.output


def test_ablation_names_match_design_settings():
    assert DesignConfig().ablation == "full"
    assert DesignConfig(direct=True).ablation == "direct"
    assert DesignConfig(use_planner=False, use_observer=False).ablation == "no-planner+no-observer"
