"""The checker end to end: hostile and broken designs get the right finding; every seed passes.

Hostile designs (tests/hostile.py) are the GPT-2 seed with one unit replaced. The
functional check runs them in the sandbox with the format check bypassed (it would
refuse most of them before they run: that is tested too).
"""

import json
import sys
from pathlib import Path

import pytest

import hostile
from designs.seeds import load_seed, seed_names
from verifier.checker import CheckOptions, check_source, check_tree, run_functional
from verifier.report import CheckReport
from verifier.sandbox import Limits

QUICK = CheckOptions(efficiency=False, train_steps=40, limits=Limits(timeout_s=90, memory_mb=4096))


def functional(case: str, options: CheckOptions = QUICK, **fmt) -> CheckReport:
    tree = hostile.tree(case, **fmt)
    source, line_map = tree.compose_with_map()
    return run_functional(source, tree.name, options, line_map)


def errors(report: CheckReport) -> dict[str, object]:
    return {f.check: f for f in report.errors}


# ---------------------------------------------------------------- programs that misbehave


@pytest.mark.parametrize("case,status", [("infinite_loop", "timeout"), ("fork_bomb", "timeout")])
def test_runaway_designs_time_out(case, status):
    options = CheckOptions(efficiency=False, limits=Limits(timeout_s=12, memory_mb=4096))
    report = functional(case, options)
    assert list(errors(report)) == [f"sandbox.{status}"]
    assert "Python loops" in report.errors[0].fix


def test_memory_bomb_is_out_of_memory_with_its_line():
    report = functional("memory_bomb", CheckOptions(efficiency=False, limits=Limits(timeout_s=60, memory_mb=3072)))
    finding = errors(report)["sandbox.out_of_memory"]
    assert finding.unit == "GeluMLP" and finding.line == 22


@pytest.mark.parametrize("case,status,text", [
    ("os_exit", "sandbox.crashed", "exited with code 0"),
    ("segfault", "sandbox.crashed", "SIGSEGV"),
    ("stdout_flood", "sandbox.killed", "MiB to stdout"),
])
def test_process_level_failures(case, status, text):
    report = functional(case)
    assert status in errors(report) and text in errors(report)[status].message


@pytest.mark.parametrize("case,text", [
    ("sys_exit", "sys.exit"),
    ("network", "Network is unreachable"),
    ("write_outside", "Read-only file system"),
])
def test_forbidden_effects_fail_at_the_line_that_tries(case, text, tmp_path):
    report = functional(case, path=str(Path(__file__).resolve().parents[1] / "PWNED"))
    finding = errors(report)["forward"]
    assert text in finding.message and finding.unit == "GeluMLP" and finding.line == 20
    assert not (Path(__file__).resolve().parents[1] / "PWNED").exists()


def test_api_keys_are_not_there_to_steal(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-live")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant")
    monkeypatch.setenv("HF_TOKEN", "hf_live")
    message = errors(functional("steal_api_key"))["forward"].message
    keys = message.split("KEYS:")[1].split()[0].strip("(),")
    assert not {"OPENAI_API_KEY", "ANTHROPIC_API_KEY", "HF_TOKEN"} & set(keys.split(","))


# ---------------------------------------------------------------- models that are wrong


@pytest.mark.parametrize("case", ["non_causal", "reverse_cumsum"])
def test_designs_that_read_the_future(case):
    report = functional(case)
    found = errors(report)
    assert "causality" in found and "causality.gradient" in found
    assert found["causality"].unit == "MHA" and found["causality"].line == 18
    assert "training" not in found  # a leak is named as a leak, not as a training failure


def test_a_leak_at_one_position_is_located():
    finding = errors(functional("partial_cheat"))["causality"]
    assert "outputs at positions 37 see tokens at positions 38" in finding.message


def test_leakage_guard_catches_what_perturbation_misses():
    report = functional("sneaky_leak")
    assert set(errors(report)) == {"leakage"}  # the causality checks use other batch shapes
    assert report.metrics["causality_max_rel_change"] == 0


def test_nan_after_a_few_steps():
    report = functional("nan_after_steps")
    finding = errors(report)["nonfinite"]
    assert "at step" in finding.message and "first unit with NaN/inf output" in finding.message
    assert len(report.metrics["train_losses"]) >= 3  # it trained a few steps first


def test_unused_parameters_are_warnings():
    report = functional("unused_parameter")
    assert report.ok
    assert [w.check for w in report.warnings] == ["gradients", "gradients"]
    assert "blocks.0.mlp.spare is never used" in report.warnings[0].message


def test_detached_parameters_are_errors():
    report = functional("detached_parameter")
    messages = [f.message for f in report.errors if f.check == "gradients"]
    assert any("blocks.0.mlp.scale is used in the forward pass but gets no gradient" in m for m in messages)
    assert any("never changed" in m for m in messages)


def test_wrong_output_shape_names_the_unit():
    finding = errors(functional("wrong_shape"))["forward"]
    assert finding.unit == "GeluMLP" and "output Y must have X's shape" in finding.message


def test_a_design_much_slower_than_gpt2_is_an_error():
    # Batch 1: GPT-2's step shrinks while the design's per-position Python overhead stays, so the
    # ratio has a wide margin over the 3x limit even on a loaded machine.
    options = CheckOptions(efficiency_target=300_000, limits=Limits(timeout_s=600, memory_mb=4096),
                           extra={"efficiency_repeats": 2, "efficiency_batch": 1})
    report = functional("slow_python_loop", options)
    assert "efficiency.time" in errors(report), report.to_markdown()
    finding = errors(report)["efficiency.time"]
    assert report.metrics["vs_gpt2"]["time"] > 3.0 and "Vectorize" in finding.fix
    assert report.metrics["efficiency_config"]["gpt2_params"] > 0


# ---------------------------------------------------------------- format first, then function


def test_format_check_refuses_hostile_code_before_it_runs():
    fixed, report = check_tree(hostile.tree("network"), QUICK)
    assert not report.ok and report.stages == ["format"]
    assert any(f.check == "format.forbidden-import" and "socket" in f.message for f in report.errors)


def test_auto_fixes_are_applied_then_checked():
    code = hostile.unit_code("unused_parameter")[1].replace(
        "        super().__init__(embed_dim, block_loc, kwarg_all)\n", "")
    tree = load_seed("gpt2").replace("GeluMLP", code)
    fixed, report = check_tree(tree, QUICK)
    assert report.autofixes and "super().__init__" in fixed.units["GeluMLP"].code
    assert report.ok and "training" in report.stages


# ---------------------------------------------------------------- the seeds


# One seed per family of token mixer in the default run (attention, SSM, linear attention, long
# convolution); the other seeds' full checks (~15 s each) run with -m slow.
DEFAULT_SEEDS = ("gpt2", "mamba2", "gla", "hyena")


@pytest.mark.parametrize("name", [n if n in DEFAULT_SEEDS else pytest.param(n, marks=pytest.mark.slow)
                                  for n in seed_names()])
def test_every_seed_passes_the_full_check(name):
    fixed, report = check_tree(load_seed(name), CheckOptions())
    assert report.ok, report.to_markdown()
    assert not report.autofixes and fixed.fingerprint() == load_seed(name).fingerprint()
    assert report.stages == ["format", "build", "unit_tests", "forward", "causality", "gradients", "params",
                             "training", "efficiency"]
    m = report.metrics
    assert m["causality_max_rel_change"] <= 1e-9 and m["train_loss_last"] < m["train_loss_first"] * 0.9
    assert all(r <= 3.0 for r in m["vs_gpt2"].values())
    json.loads(report.to_json())


def test_exported_module_checks_like_its_tree(tmp_path):
    source = load_seed("llama").compose()
    report = check_source(source, "llama", QUICK)
    assert report.ok and "causality" in report.stages


def test_parameter_target_is_enforced():
    options = CheckOptions(target_params=2_000_000, efficiency=False, train_steps=20)
    fixed, report = check_tree(load_seed("gpt2"), options)
    assert report.ok and abs(report.metrics["params_at_target"]["error"]) <= 0.05


def test_checker_runs_nothing_in_the_caller():
    before = set(sys.modules)
    functional("unused_parameter")
    assert not [m for m in set(sys.modules) - before if m.startswith("genesys_design")]
