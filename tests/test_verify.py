"""Verifying designs on rungs: the pipeline end to end at tiny scale, in the sandbox."""

from dataclasses import replace

import pytest

import hostile
from designs.catalog import open_archive
from designs.seeds import load_seed
from verifier.calibrate import calibrate
from verifier import evaluate, ladder
from verifier.ladder import LadderError, get_rung
from verifier.verify import verify_design


def test_lm_rung_trains_in_the_sandbox_and_is_recorded(tmp_path):
    with open_archive(tmp_path / "run") as archive:
        result = verify_design(load_seed("gpt2"), "cpu", "lm-xs", tmp_path / "run", scale=0.005, check=False,
                               archive=archive)
        assert result.ok, result.error
        m = result.metrics
        assert 0 < m["bpb"] < 8.1 and m["steps"] >= 1 and m["params"] == 501_552 and m["tokens_per_s"] > 0
        stored = archive.verifications(design="gpt2", rung="cpu/lm-xs")
        assert len(stored) == 1 and stored[0].metrics["bpb"] == pytest.approx(m["bpb"])
        assert stored[0].corpus_fp and stored[0].tokenizer_fp and stored[0].config["rung"]["name"] == "lm-xs"
    out = tmp_path / "run" / "verify" / "gpt2" / "cpu-lm-xs" / "seed0"
    assert (out / "final" / "model.safetensors").exists() and (out / "design.py").exists()


def _rung_with_tasks(monkeypatch, tasks: tuple[str, ...]) -> None:
    """A "bench" ladder: lm-xs with lm-eval tasks on top (the gpu ladder's shape, at CPU size)."""
    rung = replace(get_rung("cpu", "lm-xs"), name="lm-xs-eval", eval_suite=tasks, eval_limit=12)
    monkeypatch.setitem(ladder.LADDERS, "bench", (rung,))


def test_a_rung_with_lm_eval_tasks_scores_the_trained_design_in_the_sandbox(tmp_path, monkeypatch):
    _rung_with_tasks(monkeypatch, ("genesys_continuation",))

    def no_design_code_here(*args, **kwargs):
        raise AssertionError("the design's code ran in the caller's process")

    monkeypatch.setattr(evaluate, "load_checkpoint", no_design_code_here)
    phases = []
    result = verify_design(load_seed("gpt2"), "bench", "lm-xs-eval", tmp_path, scale=0.005, check=False,
                           progress=lambda p: phases.append(p["phase"]))
    assert result.ok, result.error
    assert "lm_eval_error" not in result.metrics, result.metrics["lm_eval_error"]
    scores = result.metrics["lm_eval"]["genesys_continuation"]
    assert scores["samples"] == 12 and 0.0 <= scores["acc"] <= 1.0 and "acc_stderr" in scores
    assert phases.index("lm_eval_data") < phases.index("train") < phases.index("lm_eval")
    final = tmp_path / "verify" / "gpt2" / "bench-lm-xs-eval" / "seed0" / "final"
    assert {"design.py", "config.json", "model.safetensors"} <= {p.name for p in final.iterdir()}


def test_a_rung_whose_benchmarks_cannot_be_reached_fails_before_training(tmp_path, monkeypatch):
    _rung_with_tasks(monkeypatch, ("rte",))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    result = verify_design(load_seed("gpt2"), "bench", "lm-xs-eval", tmp_path, scale=0.005, check=False)
    assert result.status == "failed"
    assert result.error.startswith("rung lm-xs-eval's lm-eval tasks: task rte needs dataset nyu-mll/glue")
    assert not (tmp_path / "verify" / "gpt2" / "bench-lm-xs-eval" / "seed0" / "train_log.jsonl").exists()


def test_synthetic_rung_scores_every_task(tmp_path):
    result = verify_design(load_seed("llama"), "cpu", "synthetic", tmp_path, scale=0.005, check=False)
    assert result.ok, result.error
    assert set(result.metrics["accuracy"]) == set(get_rung("cpu", "synthetic").eval_suite)
    assert all(0.0 <= a <= 1.0 for a in result.metrics["accuracy"].values())


def test_a_design_that_fails_its_check_is_not_trained(tmp_path):
    result = verify_design(hostile.tree("non_causal"), "cpu", "lm-xs", tmp_path, scale=0.005)
    assert result.status == "check_failed" and result.error.startswith("causality")
    assert not (tmp_path / "verify").exists()


def test_unknown_rung_fails_before_anything_runs(tmp_path):
    with pytest.raises(LadderError, match="no rung 'lm-xl'"):
        verify_design(load_seed("gpt2"), "cpu", "lm-xl", tmp_path)


@pytest.mark.slow
def test_calibrate_smoke(tmp_path):
    with open_archive(tmp_path) as archive:
        out = calibrate("cpu", tmp_path, archive, ["gpt2", "llama", "hyena"], ["gpt2", "llama"], repeats=2,
                        scale=0.005)
    assert {r["rung"] for r in out["rows"]} == {"synthetic", "lm-xs", "lm-s"}
    assert out["correlations"] and (tmp_path / "calibration" / "cpu.md").exists()


def test_calibration_table_shows_repeated_runs_as_their_mean_and_ranks_rungs(tmp_path):
    from verifier.calibrate import summarize, to_markdown
    from verifier.verify import RungResult

    def lm(design, bpb, seed=0):
        return RungResult(design, "lm-xs", seed, "ok", {"bpb": bpb, "tokens_per_s": 1000.0, "params": 500_000})

    def synth(design, acc, seed=0):
        return RungResult(design, "synthetic", seed, "ok", {"accuracy": {"in_context_recall": acc},
                                                             "mean_accuracy": acc})

    results = {
        "synthetic": {"gpt2": [synth("gpt2", a, s) for s, a in enumerate((0.5, 1.0, 0.6))],
                      "a": [synth("a", 0.9)], "b": [synth("b", 0.3)], "c": [synth("c", 0.8)]},
        "lm-xs": {"gpt2": [lm("gpt2", 3.0, 0), lm("gpt2", 3.2, 1)], "a": [lm("a", 2.8)], "b": [lm("b", 3.5)],
                  "c": [lm("c", 3.0)],
                  "d": [RungResult("d", "lm-xs", 0, "failed", {}, "timeout: no result within 1200 s")]},
    }
    out = summarize("cpu", results, tmp_path)
    rows = {(r["rung"], r["design"]): r for r in out["rows"]}
    base = rows[("synthetic", "gpt2")]
    assert base["runs"] == 3 and base["per_run"] == [0.5, 1.0, 0.6] and base["mean_accuracy"] == 0.7
    assert base["fitness"] == 0.0 and rows[("synthetic", "a")]["fitness"] == 0.2
    assert rows[("lm-xs", "gpt2")]["bpb"] == 3.1 and rows[("lm-xs", "a")]["fitness"] == round(0.3 / 3.1, 4)
    assert rows[("lm-xs", "d")]["status"] == "failed" and "fitness" not in rows[("lm-xs", "d")]
    # a, c, gpt2, b in the same order on both rungs
    assert out["correlations"] == [{"from": "synthetic", "to": "lm-xs", "designs": 4, "spearman": 1.0}]
    text = to_markdown(out)
    assert "mean acc 0.700 (runs: 0.500, 1.000, 0.600)" in text and "timeout: no result" in text
    assert (tmp_path / "calibration" / "cpu.md").read_text() == text
