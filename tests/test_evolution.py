"""The evolution graph end to end: real design sessions, checker, trainer and archive, tiny budgets."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from designs.archive import Archive
from graph import nodes
from graph.evolution import Budget, RunConfig, RunError, load_run_config, run_evolution, save_run_config

ROOT = Path(__file__).resolve().parent.parent
FAST_CHECK = {"efficiency": False, "train_steps": 10, "extra": {"batch_size": 4, "train_seq_len": 32}}
# Two language-modeling rungs with a few training steps each: the whole ladder machinery, in seconds.
TINY = dict(rungs=["lm-xs", "lm-s"], scale=0.004, promote_after=1, design={"check": FAST_CHECK})


def contents(run_dir: Path) -> dict:
    """What a run left in its archive, without timestamps: designs, lineage, verifications, costs."""
    archive = Archive.open(run_dir)
    try:
        designs = sorted((d.name, d.fingerprint, d.status, d.mode, d.parents) for d in archive.list_designs())
        verifications = sorted((v.design, v.rung, v.seed) for v in archive.verifications())
        costs = sorted((c["role"], c["calls"]) for c in
                       [{"role": r, **v} for r, v in archive.cost_summary().items()])
        return {"designs": designs, "verifications": verifications, "costs": costs}
    finally:
        archive.close()


@pytest.fixture()
def run_dir(tmp_path):
    yield tmp_path / "run"
    nodes.close_archives()


def test_one_symbolic_design_is_checked_verified_and_ranked(run_dir, monkeypatch):
    """...and, with the time budget spent when it could climb to lm-s, no climb starts."""
    from graph import evolution

    def spent_for_climbs(used, budget, count_designs=True):
        return "time budget reached (the test's)" if not count_designs else over_budget(used, budget)

    over_budget = evolution.over_budget
    monkeypatch.setattr(evolution, "over_budget", spent_for_climbs)
    events: list[dict] = []
    run = RunConfig(budget=Budget(designs=1), baseline_repeats=1, **TINY)
    final = run_evolution(run_dir, run, on_event=events.append)
    assert final["stop"].startswith("design budget reached (1 sessions)")
    (session,) = final["sessions"]
    assert session["outcome"] == "implemented", session
    archive = Archive.open(run_dir)
    try:
        record = archive.get_design(session["name"])
        assert record.status == "implemented" and record.parents and record.proposal["title"]
        runs = {(v.design, v.rung, v.seed) for v in archive.verifications()}
        assert runs == {("gpt2", "cpu/lm-xs", 0), (session["name"], "cpu/lm-xs", 0)}
        from graph.report import leaderboard

        board = leaderboard(archive, "cpu")
    finally:
        archive.close()
    assert {r.design for r in board} == {"gpt2", session["name"]}
    kinds = [e["event"] for e in events]
    for kind in ("phase", "selected", "design", "design_step", "designed", "verify", "verified", "best", "stop"):
        assert kind in kinds, kind
    best = [e for e in events if e["event"] == "best"][-1]
    assert best["design"] == session["name"] and best["rung"] == "lm-xs" and best["noise"] > 0
    assert "climb to lm-s not started: time budget reached (the test's)" in [e.get("phase") for e in events]


@pytest.mark.slow
@pytest.mark.timeout(2400)  # ~8 min on a quiet machine: GPT-2 three times on each of two rungs, two sessions
def test_short_symbolic_run_designs_verifies_and_climbs(run_dir):
    events: list[dict] = []
    run = RunConfig(budget=Budget(designs=2), **TINY)
    final = run_evolution(run_dir, run, on_event=events.append)

    assert final["stop"].startswith("design budget reached")
    assert len(final["sessions"]) == 2
    archive = Archive.open(run_dir)
    try:
        runs = {(v.design, v.rung, v.seed) for v in archive.verifications()}
        # the baseline is trained with three seeds on the first rung before anything is compared
        assert {("gpt2", "cpu/lm-xs", s) for s in range(3)} <= runs
        implemented = [s["name"] for s in final["sessions"] if s["outcome"] == "implemented"]
        assert implemented, final["sessions"]
        for name in implemented:
            record = archive.get_design(name)
            assert record.status == "implemented" and record.parents and record.proposal["title"]
            assert (name, "cpu/lm-xs", 0) in runs
        # the better half of the first rung climbs, after the baseline was trained there
        climbed = {d for d, rung, _ in runs if rung == "cpu/lm-s"} - {"gpt2"}
        assert climbed and climbed <= set(implemented)
        assert {("gpt2", "cpu/lm-s", s) for s in range(3)} <= runs
    finally:
        archive.close()
    kinds = {e["event"] for e in events}
    assert {"selected", "design", "designed", "verify", "verified", "stop"} <= kinds

    from graph.report import leaderboard

    archive = Archive.open(run_dir)
    try:
        board = leaderboard(archive, "cpu")
    finally:
        archive.close()
    assert "gpt2" in [r.design for r in board] and all(r.design != "llama" for r in board)


def test_run_settings_are_checked_and_kept(run_dir, tmp_path):
    with pytest.raises(ValueError, match="at least one budget"):
        Budget()
    with pytest.raises(ValueError, match="no rung"):
        RunConfig(rungs=["lm-xxl"])
    with pytest.raises(ValueError, match="gpt2"):
        RunConfig(baselines=["llama"])
    with pytest.raises(ValueError, match="rung_scale: ladder 'cpu' has no rung lm-q"):
        RunConfig(rung_scale={"lm-q": 2.0})
    assert RunConfig(scale=0.5, rung_scale={"lm-s": 0.2}).scale_for("lm-s") == pytest.approx(0.1)
    from graph.run_command import CPU_DEFAULT, settings

    assert settings(None, {}, {}).scale_for("lm-s") == pytest.approx(0.1)
    toml = tmp_path / "run.toml"
    toml.write_text("promote_after = 5\n[budget]\nminutes = 30\n")
    mine = settings(toml, {}, {})  # the embedded default fills in, the file's settings win
    assert mine.promote_after == 5 and mine.budget.minutes == 30 and mine.rungs == CPU_DEFAULT["rungs"]
    run = RunConfig(budget=Budget(designs=0), **TINY)
    save_run_config(run_dir, run)
    assert load_run_config(run_dir) == run
    with pytest.raises(RunError, match="already holds a run"):
        run_evolution(run_dir, run)
    (run_dir / "run.json").write_text(json.dumps({**run.model_dump(), "format": 99}))
    with pytest.raises(RunError, match="format 99"):
        load_run_config(run_dir)
    with pytest.raises(RunError, match="not a run directory"):
        load_run_config(tmp_path / "nowhere")


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_short_run_with_scripted_llms(run_dir, monkeypatch):
    """The same loop with an LLM designer: LangChain chat models replaying the tests/transcripts session
    (tool calls, a proposal sent back then accepted, a causality failure fixed), checked, verified, ranked,
    with its token costs in the archive. Selection is pinned to a GPT-2 mutation, which the transcripts answer."""
    from graph import evolution
    from graph.run_command import Display
    from graph.selection import Selection
    from tests.fake_llm import scripted_designer

    class Pinned:
        def select(self, view, rng):
            return Selection(mode="mutation", parents=("gpt2",), reason="pinned by the test")

    monkeypatch.setattr(evolution, "get_strategy", lambda name: Pinned())
    events: list[dict] = []
    run = RunConfig(budget=Budget(designs=1), baseline_repeats=1, **{**TINY, "rungs": ["lm-xs"]})
    final = run_evolution(run_dir, run, designer=scripted_designer(), on_event=events.append)
    (session,) = final["sessions"]
    assert session["outcome"] == "implemented", session
    archive = Archive.open(run_dir)
    try:
        record = archive.get_design(session["name"])
        assert record.mode == "mutation" and list(record.parents) == ["gpt2"]
        assert [r["verdict"] for r in record.reviews] == ["revise", "accept"]
        assert {"MHA", "ShortConv"} <= set(archive.load_tree_json(session["name"])["units"])
        runs = {(v.design, v.rung) for v in archive.verifications()}
        assert runs == {("gpt2", "cpu/lm-xs"), (session["name"], "cpu/lm-xs")}
        costs = archive.cost_summary()
    finally:
        archive.close()
    assert {"proposer", "reviewer", "planner", "coder", "observer"} <= set(costs)
    assert all(costs[role]["prompt_tokens"] > 0 for role in ("proposer", "coder"))
    display, printed = Display(run), []
    for event in events:  # what `python cli.py run > log` prints
        display(event)
        printed.append(display.line(event))
    printed = [line for line in printed if line]
    assert any(f"{session['name']} @ lm-xs: ok" in line for line in printed), printed
    assert "implemented=1" in printed[-1], printed[-1]


def test_zero_budget_ends_after_the_baselines(run_dir):
    final = run_evolution(run_dir, RunConfig(budget=Budget(designs=0), baseline_repeats=1,
                                             **{**TINY, "rungs": ["lm-xs"]}))
    assert final["stop"].startswith("design budget reached (0")
    assert contents(run_dir)["verifications"] == [("gpt2", "cpu/lm-xs", 0)]


def test_cli_run_rejects_contradictory_flags(tmp_path):
    import cli

    result = CliRunner().invoke(cli.app, ["run", "--resume", str(tmp_path), "--budget-designs", "3"])
    assert result.exit_code == 2
    assert "--resume continues a run with its recorded settings" in result.output


def test_a_full_disk_ends_the_run_with_what_to_do(tmp_path, monkeypatch):
    import errno

    import cli
    from graph import run_command

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run" / "archive.db"))

    monkeypatch.setattr(run_command, "run_evolution", full)
    result = CliRunner().invoke(cli.app, ["run", "--run-dir", str(tmp_path / "run"), "--budget-designs", "1"])
    assert result.exit_code == 2
    assert "is full" in result.output and f"--resume {tmp_path / 'run'}" in result.output


def _cli_run(run_dir: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "GENESYS_RUN_DIR": str(run_dir), "COLUMNS": "120"}
    return subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "run", *args], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


@pytest.mark.slow
@pytest.mark.timeout(5400)  # two whole runs, the second killed and resumed again and again
def test_kill_9_at_random_points_then_resume_ends_with_the_same_archive(tmp_path):
    """An uninterrupted run and one killed -9 again and again, each time resumed, leave the same archive."""
    config = tmp_path / "run.toml"
    config.write_text(FAST_TOML)
    settings = ["--config", str(config), "--budget-designs", "3"]
    straight = tmp_path / "straight"
    first = _cli_run(straight, "--run-dir", str(straight), *settings)
    assert first.wait(timeout=1800) == 0, first.stderr.read().decode()[-2000:]

    killed = tmp_path / "killed"
    rng = random.Random(7)
    proc = _cli_run(killed, "--run-dir", str(killed), *settings)
    kills = 0
    while True:
        try:
            # Four kills at random points, then the run may finish: on a loaded machine a window shorter
            # than one checker or training job would otherwise never let the run progress.
            code = proc.wait(timeout=rng.uniform(5, 40) if kills < MAX_KILLS else 1800)
            assert code == 0, proc.stderr.read().decode()[-2000:]
            break
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)  # kill -9 of the run: its sandboxed jobs die with it (PDEATHSIG)
            proc.wait()
            kills += 1
            time.sleep(0.5)
            proc = _cli_run(killed, "--resume", str(killed))
    assert kills >= 2
    assert contents(killed) == contents(straight)


MAX_KILLS = 4
FAST_TOML = """
rungs = ["lm-xs", "lm-s"]
scale = 0.004
promote_after = 1

[design.check]
efficiency = false
train_steps = 10
extra = { batch_size = 4, train_seq_len = 32 }
"""
