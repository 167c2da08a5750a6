"""Reports on a run: leaderboard, one design in full, the HTML report, and their commands.

The archive is built by hand, as an evolution run would leave it: the seeds, a few
child designs with parents, proposals, reviews and session meta, GPT-2 verified with
3 seeds and the children verified on two rungs of the cpu ladder, a training log
and a curves artifact. Nothing is trained.
"""

import json
import math
from html.parser import HTMLParser

import pytest
from typer.testing import CliRunner

from designs.catalog import open_archive
from designs.seeds import load_seed
from designs.tree import UnitTree
from graph.evolution import RunConfig, save_run_config
from graph.report import (
    DesignPoint,
    fitness_color,
    leaderboard,
    nice_ticks,
    pareto_front,
    phylogeny_layout,
    show_design,
    tick_label,
    unit_diff,
    write_report,
)
from graph.report_commands import report_app
from verifier.ladder import SYNTHETIC_QUICK

runner = CliRunner()
WIDE = {"COLUMNS": "240"}  # rich tables would fold names at the runner's 80 columns

MUTANT, RESIZED, CROSS, FAILED, WORSE = ("g0001a-mutation", "g0001b-mutation", "g0002a-crossover",
                                         "g0002b-mutation", "g0003a-mutation")
GPT2_BPB = (2.50, 2.52, 2.48)  # mean 2.50, seed-to-seed std 0.02
GPT2_ACC = (0.50, 0.52, 0.48)


def named(tree: UnitTree, name: str) -> UnitTree:
    tree.name = name
    return tree


def mutant_tree() -> UnitTree:
    gpt2 = load_seed("gpt2")
    code = gpt2.units["GeluMLP"].code.replace('F.gelu(self.fc1(X), approximate="tanh")',
                                              "F.silu(self.fc1(X)) * torch.sigmoid(self.fc1(X))")
    assert code != gpt2.units["GeluMLP"].code
    return named(gpt2.replace("GeluMLP", code), MUTANT)


def resized_tree() -> UnitTree:
    gpt2 = load_seed("gpt2")
    mha = gpt2.units["MHA"]
    return named(gpt2.replace("MHA", mha.code, args={**mha.args, "n_heads": 8}), RESIZED)


def cross_tree() -> UnitTree:
    mha = resized_tree().units["MHA"]
    return named(mutant_tree().replace("MHA", mha.code, args=mha.args), CROSS)


PROPOSALS = [
    {"title": "SiLU-gated MLP", "mode": "mutation", "parents": ["gpt2"], "selected_unit": "GeluMLP",
     "motivation": "GELU MLPs lack a multiplicative gate.", "idea": "Gate the hidden layer with its own sigmoid.",
     "math": "y = W2 (silu(W1 x) * sigmoid(W1 x))", "pseudo_code": "h = fc1(x)\nreturn fc2(silu(h) * sigmoid(h))",
     "expected_effect": "2% lower bpb", "risks": "slower", "references": ["2002.05202"], "recipe": None},
]
FIRST_TRY = dict(PROPOSALS[0], title="Squared ReLU MLP", idea="Square the ReLU.")
REVIEWS = [
    {"round": 0, "ratings": {"novelty": 2, "soundness": 3, "feasibility": 4, "expected_gain": 2}, "overall": 2.5,
     "verdict": "revise", "summary": "Squared ReLU is well known.", "suggestions": ["Try a gate instead"],
     "nearest": ["primer"]},
    {"round": 1, "ratings": {"novelty": 3, "soundness": 4, "feasibility": 5, "expected_gain": 3}, "overall": 4.0,
     "verdict": "accept", "summary": "A cheap gate; worth a try.", "suggestions": [], "nearest": []},
]
ATTEMPTS = [
    {"unit": "GeluMLP", "attempt": 1, "chosen": True, "code": None, "report": None, "ok": False, "error": None,
     "summary": "causality: output at position 3 changed when position 7 did", "rating": 2.0, "accept": False,
     "notes": "mask the future", "check_s": 4.2},
    {"unit": "GeluMLP", "attempt": 2, "chosen": True, "code": None, "report": None, "ok": True, "error": None,
     "summary": "", "rating": 4.5, "accept": True, "notes": "clean", "check_s": 3.9},
]


def lm_metrics(bpb: float, flops: float = 3.1e6, params: int = 501_000) -> dict:
    val = bpb * math.log(2)
    return {"bpb": bpb, "val_loss": val, "train_loss": val + 0.05, "tokens": 2_000_000, "steps": 488,
            "tokens_per_s": 5200.0, "mfu": 0.03, "flops_per_token": flops, "params": params, "d_model": 96,
            "n_block": 4}


def synthetic_metrics(mean: float) -> dict:
    accuracy = {task: mean + (0.01 if i % 2 else -0.01) * (i < 6) for i, task in enumerate(SYNTHETIC_QUICK)}
    return {"accuracy": accuracy, "mean_accuracy": sum(accuracy.values()) / len(accuracy), "params": 99_000,
            "d_model": 48, "n_block": 2, "task_seconds": {t: 9.0 for t in SYNTHETIC_QUICK}}


def verify(archive, design: str, rung: str, seed: int, metrics: dict, wall: float = 60.0, curves=None) -> None:
    fp = ("synthetic-quick", "task-vocab") if rung.endswith("synthetic") else ("corpus-fp", "byte")
    archive.record_verification(design, rung=rung, seed=seed, corpus_fp=fp[0], tokenizer_fp=fp[1],
                                metrics=metrics, wall_time_s=wall, curves_hash=curves,
                                hardware={"machine": "x86_64", "cpus": 2}, config={"rung": {"name": rung}})


def train_log(run_dir, design: str, rung: str, seed: int, start: float, end: float) -> None:
    path = run_dir / "verify" / design / rung.replace("/", "-") / f"seed{seed}" / "train_log.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [{"step": s, "tokens": s * 4096, "loss": start + (end - start) * s / 480, "lr": 2e-3}
             for s in range(10, 490, 10)]
    lines.insert(5, {"step": 55, "event": "oom_backoff", "micro_batch_size": 8})
    path.write_text("".join(json.dumps(e) + "\n" for e in lines) + '{"step": 490, "tok')  # killed mid-line


def build_run(run_dir):
    """The archive a short run on the cpu ladder would leave."""
    with open_archive(run_dir) as archive:
        for tree, parents, mode in ((mutant_tree(), ["gpt2"], "mutation"), (resized_tree(), ["gpt2"], "mutation"),
                                    (cross_tree(), [MUTANT, RESIZED], "crossover")):
            meta = {"outcome": "implemented", "reason": "", "session": tree.name, "designer": "symbolic",
                    "proposals": [FIRST_TRY, PROPOSALS[0]] if tree.name == MUTANT else [],
                    "plan": {"tasks": [{"unit": "GeluMLP", "action": "modify", "source": "gpt2:GeluMLP",
                                        "description": "gate the hidden layer", "children": []}], "notes": ""},
                    "attempts": ATTEMPTS if tree.name == MUTANT else [], "costs": {}}
            archive.record_design(tree.name, tree.to_dict(), tree.fingerprint(), mode=mode, status="implemented",
                                  family="transformer", parents=parents,
                                  proposal=dict(PROPOSALS[0], title=f"idea of {tree.name}", parents=parents),
                                  reviews=REVIEWS if tree.name == MUTANT else [], meta=meta)
        empty = UnitTree(FAILED, "", {}, {}, {})
        archive.record_design(FAILED, empty.to_dict(), empty.fingerprint(), mode="mutation", status="failed",
                              parents=[MUTANT], meta={"outcome": "failed", "reason": "GeluMLP: 3 tries failed"})
        worse = named(mutant_tree().replace("LayerNorm", load_seed("gpt2").units["LayerNorm"].code,
                                            args={"eps": 1e-3, "norm_bias": True}), WORSE)
        archive.record_design(WORSE, worse.to_dict(), worse.fingerprint(), mode="mutation", status="implemented",
                              parents=[MUTANT])
        for seed in range(3):
            verify(archive, "gpt2", "cpu/synthetic", seed, synthetic_metrics(GPT2_ACC[seed]))
            verify(archive, "gpt2", "cpu/lm-xs", seed, lm_metrics(GPT2_BPB[seed], flops=3.0e6), wall=300.0)
        for design, acc in ((MUTANT, 0.60), (RESIZED, 0.58), (CROSS, 0.55), (WORSE, 0.45)):
            verify(archive, design, "cpu/synthetic", 0, synthetic_metrics(acc))
        verify(archive, MUTANT, "cpu/lm-xs", 0, lm_metrics(2.30, flops=3.4e6), wall=320.0)
        curves = archive.artifacts.put_json({"log": [{"step": s, "tokens": s * 4096, "loss": 3.0 - s / 400}
                                                     for s in range(10, 490, 10)]})
        verify(archive, RESIZED, "cpu/lm-xs", 0, lm_metrics(2.29, flops=3.6e6), wall=330.0, curves=curves)
        verify(archive, WORSE, "cpu/lm-xs", 0, lm_metrics(2.60, flops=3.2e6), wall=310.0)
        archive.record_event("verification_failed", {"rung": "cpu/lm-s", "seed": 0, "status": "failed",
                                                     "error": "timeout: training ran past 2400 s"},
                             design=MUTANT, key=f"verify-failed:{MUTANT}:cpu/lm-s:0")
        for i, (role, dollars) in enumerate((("proposer", 0.012), ("reviewer", 0.004), ("coder", 0.02))):
            archive.record_cost(f"{MUTANT}:{i}", role=role, model="openai:gpt-4.1-mini", prompt_tokens=1200,
                                completion_tokens=300, dollars=dollars, design=MUTANT)
        archive.record_cost(f"{MUTANT}:3", role="checker", model="sandbox", compute_s=8.1, design=MUTANT)
    train_log(run_dir, "gpt2", "cpu/lm-xs", 0, 5.5, 1.75)
    train_log(run_dir, MUTANT, "cpu/lm-xs", 0, 5.4, 1.60)
    return run_dir


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return build_run(tmp_path_factory.mktemp("report") / "run")


@pytest.fixture(scope="module")
def rows(run_dir):
    with open_archive(run_dir) as archive:
        return leaderboard(archive, "cpu")


# ---------------------------------------------------------------- leaderboard


def test_leaderboard_best_first_with_ties_within_the_noise(rows):
    names = [r.design for r in rows]
    assert FAILED not in names and "llama" not in names  # failed and never-verified designs are not ranked
    assert names[:2] == [RESIZED, MUTANT] and names.index("gpt2") < names.index(WORSE)
    by = {r.design: r for r in rows}
    # 2.29 and 2.30 bpb against GPT-2's 2.50 +- 0.02: gains of 8.4% and 8%, within the noise: one rank.
    assert by[RESIZED].fitness == pytest.approx(0.084) and by[MUTANT].fitness == pytest.approx(0.08)
    assert by[RESIZED].rank == by[MUTANT].rank == 1
    assert by["gpt2"].fitness == pytest.approx(0.0) and by["gpt2"].repeats == 3
    assert by[WORSE].rank > by["gpt2"].rank  # 4% worse than GPT-2 is beyond the noise
    assert [r.fitness for r in rows] == sorted((r.fitness for r in rows), reverse=True)
    assert all(a.rank <= b.rank for a, b in zip(rows, rows[1:]))


def test_leaderboard_row_contents(rows):
    by = {r.design: r for r in rows}
    mutant, cross = by[MUTANT], by[CROSS]
    assert mutant.rung == "lm-xs" and mutant.params == 501_000 and mutant.parents == ("gpt2",)
    assert mutant.metrics["bpb"] == pytest.approx(2.30) and mutant.metrics["flops_per_token"] == 3.4e6
    assert mutant.dollars == pytest.approx(0.036)
    assert mutant.compute_s == pytest.approx(60.0 + 320.0 + 8.1)  # both rungs and the checker
    assert mutant.title == f"idea of {MUTANT}" and mutant.mode == "mutation"
    assert cross.rung == "synthetic" and cross.parents == (MUTANT, RESIZED) and cross.mode == "crossover"
    assert "mean_accuracy" in cross.metrics and cross.fitness > 0
    assert json.loads(json.dumps(mutant.to_dict()))["parents"] == ["gpt2"]


# ---------------------------------------------------------------- show


@pytest.fixture(scope="module")
def mutant_text(run_dir):
    with open_archive(run_dir) as archive:
        return show_design(archive, MUTANT)


def test_show_proposal_reviews_and_tree(mutant_text):
    text = mutant_text
    assert text.startswith(f"# {MUTANT}\n")
    assert f"## Proposal: idea of {MUTANT}" in text and "Gate the hidden layer with its own sigmoid." in text
    assert "Unit to change: `GeluMLP`" in text and "1. Squared ReLU MLP" in text  # earlier proposal listed
    assert "| round | verdict | overall | novelty | soundness | feasibility | expected_gain |" in text
    assert "| 0 | revise | 2.5 | 2 | 3 | 4 | 2 |" in text and "| 1 | accept | 4.0 | 3 | 4 | 5 | 3 |" in text
    assert "- Try a gate instead" in text
    assert "## Unit tree" in text and "├─ GeluMLP" in text


def test_show_diff_against_the_first_parent(mutant_text):
    text = mutant_text
    assert "## Changes against gpt2" in text and "Units: GeluMLP (changed)" in text
    assert f"--- gpt2/GeluMLP\n+++ {MUTANT}/GeluMLP" in text
    assert '-        return self.fc2(F.gelu(self.fc1(X), approximate="tanh"))' in text
    assert "+        return self.fc2(F.silu(self.fc1(X)) * torch.sigmoid(self.fc1(X)))" in text
    assert "### MHA" not in text  # unchanged units are left out


def test_show_verification_costs_and_session(mutant_text, rows):
    text = mutant_text
    lm = {r.design: r for r in rows}[MUTANT]
    fitness = f"fitness vs GPT-2: **{lm.fitness:+.4f} ± {lm.noise:.4f}** over 1 seed(s) against 3"
    assert f"### cpu/lm-xs\n\n{fitness}" in text  # the same fitness and noise as the leaderboard
    assert "### cpu/synthetic" in text and SYNTHETIC_QUICK[-1] in text  # per-task accuracies
    assert "| 0 | 2.3000 |" in text and "3,400,000" in text  # bpb and FLOPs per token of seed 0
    assert "### Failed verifications" in text and "timeout: training ran past 2400 s" in text
    assert "| proposer | 1 | 1,200 | 300 | 0.0120 |" in text and "verification (training)" in text
    assert "## Design session (symbolic): implemented" in text and "1. `GeluMLP` (modify)" in text
    assert "| GeluMLP | 1 | yes | fail | 2.0 | no | causality: output at position 3 changed" in text
    assert "| GeluMLP | 2 | yes | pass | 4.5 | yes |" in text


def test_show_crossover_args_change_seed_and_failed_design(run_dir):
    with open_archive(run_dir) as archive:
        cross = show_design(archive, CROSS)
        seed = show_design(archive, "gpt2")
        failed = show_design(archive, FAILED)
        unverified = show_design(archive, "llama")
    assert "parents: g0001a-mutation, g0001b-mutation" in cross
    assert "Units: MHA (changed)" in cross and "# args n_heads: 4 -> 8" in cross  # against the first parent only
    assert "(none: a seed of the library)" in seed and "fitness vs GPT-2: **+0.0000" in seed
    assert "paper: Language Models are Unsupervised Multitask Learners (2019)" in seed
    assert "session outcome: failed (GeluMLP: 3 tries failed)" in failed
    assert "(no tree: the session ended before any unit was implemented)" in failed
    assert "(not verified yet)" in failed and "(not verified yet)" in unverified


def test_unit_diff_lists_added_and_removed_units():
    gpt2, llama = load_seed("gpt2"), load_seed("llama")
    changes = {unit: (what, lines) for unit, what, lines in unit_diff(gpt2, llama)}
    assert changes["GPT2Block"][0] == "removed" and changes["SwiGLU"][0] == "added"
    assert changes["SwiGLU"][1][:2] == ["--- /dev/null", "+++ llama/SwiGLU"]
    assert changes["LayerNorm"][1][-1].startswith("-") and "RMSNorm" in changes
    assert unit_diff(gpt2, gpt2) == []


def test_unit_diff_shows_a_renamed_unit_as_its_changed_lines():
    gpt2 = load_seed("gpt2")
    child = named(UnitTree.from_dict(gpt2.to_dict()), "renamed")
    mlp = child.units.pop("GeluMLP")
    mlp.name, mlp.code = "FeedForward", mlp.code.replace("GeluMLP", "FeedForward")
    child.units["FeedForward"] = mlp
    block = child.units["GPT2Block"]
    block.children = [c if c != "GeluMLP" else "FeedForward" for c in block.children]
    block.code = block.code.replace("GeluMLP", "FeedForward")
    changes = {unit: (what, lines) for unit, what, lines in unit_diff(gpt2, child)}
    what, lines = changes["FeedForward"]
    assert what == "added, from gpt2/GeluMLP" and lines[:2] == ["--- gpt2/GeluMLP", "+++ renamed/FeedForward"]
    assert "-class GeluMLP(GAUBase):" in lines and "+class FeedForward(GAUBase):" in lines
    assert len([line for line in lines if line.startswith("+") and not line.startswith("+++")]) < 6
    assert changes["GeluMLP"][0] == "removed" and "# children:" in changes["GPT2Block"][1][0]


# ---------------------------------------------------------------- HTML report


class Collector(HTMLParser):
    """Ids of svg elements, balance of svg/section tags, and anything that would fetch from outside."""

    def __init__(self):
        super().__init__()
        self.svgs, self.depth, self.external, self.tags = [], {"svg": 0, "section": 0}, [], []
        self.groups: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if tag in self.depth:
            self.depth[tag] += 1
        if tag == "svg":
            self.svgs.append(attrs.get("id"))
        if tag == "g" and attrs.get("data-design"):
            self.groups.append(attrs["data-design"])
        for key in ("src", "href"):
            if attrs.get(key):
                self.external.append(attrs[key])

    def handle_endtag(self, tag):
        if tag in self.depth:
            self.depth[tag] -= 1


@pytest.fixture(scope="module")
def report_html(run_dir):
    path = write_report(run_dir, "cpu")
    assert path == run_dir / "report.html"
    return path.read_text()


def test_report_has_the_four_plots_and_parses(report_html):
    parser = Collector()
    parser.feed(report_html)
    parser.close()
    assert {"plot-best-fitness", "plot-phylogeny", "plot-loss-lm-xs", "plot-pareto-lm-xs"} <= set(parser.svgs)
    assert parser.depth == {"svg": 0, "section": 0}
    assert "script" not in parser.tags and parser.external == []  # self-contained: nothing fetched
    # The phylogeny shows every design of the run, GPT-2, and no seed the run did not use.
    assert {MUTANT, RESIZED, CROSS, FAILED, WORSE, "gpt2"} == set(parser.groups)


def test_report_plot_contents(report_html):
    loss = report_html.split('id="plot-loss-lm-xs"')[1].split("</svg>")[0]
    for design in ("gpt2", MUTANT, RESIZED):  # logs for gpt2 and the mutant, a curves artifact for the other
        assert f"<title>{design}</title>" in loss
    assert WORSE not in loss  # no curves recorded for it
    assert "plot-loss-synthetic" not in report_html  # the synthetic rung has no loss curves
    pareto = report_html.split('id="plot-pareto-lm-xs"')[1].split("</svg>")[0]
    # GPT-2 (cheapest), the mutant and the resized design are on the front; WORSE costs more than GPT-2 for less.
    assert pareto.count("front-point") == 2 and "baseline-point" in pareto
    assert f">{MUTANT}</text>" in pareto and f">{WORSE}</text>" not in pareto  # only the front is labelled
    assert 'class="front"' in pareto
    phylogeny = report_html.split('id="plot-phylogeny"')[1].split("</svg>")[0]
    assert phylogeny.count('stroke-dasharray="4 3"') == 1  # the crossover's second parent
    assert 'class="node failed"' in phylogeny
    best = report_html.split('id="plot-best-fitness"')[1].split("</svg>")[0]
    assert best.count('class="point"') == 4 and 'class="best"' in best  # 4 verified designs of 5 sessions
    assert "reached lm-xs" in best and "reached synthetic" in best
    for text in (f"Best: <b>{RESIZED}</b>", "total LLM spend $0.0360", "cpu/lm-xs", "implemented"):
        assert text in report_html


def test_report_out_path_and_nothing_verified(tmp_path):
    build = tmp_path / "run"
    with open_archive(build):
        pass
    with pytest.raises(ValueError, match="no verified designs yet"):
        write_report(build, "cpu")
    with pytest.raises(ValueError, match="no run directory"):
        write_report(tmp_path / "missing", "cpu")
    assert not (tmp_path / "missing").exists()  # reading never creates a run directory


# ---------------------------------------------------------------- plot helpers


def test_pareto_front_keeps_the_undominated():
    points = [("a", 1.0, 0.1), ("b", 2.0, 0.3), ("c", 2.5, 0.2), ("d", 3.0, 0.3), ("e", 0.5, -0.2)]
    assert pareto_front(points) == ["e", "a", "b"]


def test_phylogeny_layout_puts_parents_above_children():
    pts = [DesignPoint("gpt2", 0, (), "seed", "seed"), DesignPoint("llama", 0, (), "seed", "seed"),
           DesignPoint("a", 1, ("gpt2",), "mutation", "implemented"),
           DesignPoint("b", 2, ("llama",), "mutation", "implemented"),
           DesignPoint("c", 3, ("a", "b"), "crossover", "implemented"),
           DesignPoint("d", 4, ("c",), "mutation", "failed")]
    layout = phylogeny_layout(pts)
    assert [layout[n][0] for n in ("gpt2", "llama", "a", "b", "c", "d")] == [0, 0, 1, 1, 2, 3]
    assert layout["a"][1] < layout["b"][1]  # under their parents' order
    # A crossover of a design with its own child sits below both.
    family = [DesignPoint("gpt2", 0, (), "seed", "seed"), DesignPoint("a", 1, ("gpt2",), "mutation", "implemented"),
              DesignPoint("b", 2, ("a",), "mutation", "implemented"),
              DesignPoint("x", 3, ("a", "b"), "crossover", "implemented")]
    assert [phylogeny_layout(family[::-1])[n][0] for n in ("a", "b", "x")] == [1, 2, 3]
    chain = [DesignPoint("gpt2", 0, (), "seed", "seed")] + [
        DesignPoint(f"m{i}", i, (f"m{i - 1}" if i > 1 else "gpt2",), "mutation", "implemented") for i in range(1, 3000)]
    assert phylogeny_layout(chain[::-1])["m2999"] == (2999, 0.0)  # deeper than the recursion limit


def test_ticks_and_colors():
    assert nice_ticks(0, 1) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(-0.013, 0.087) == [0, 0.02, 0.04, 0.06, 0.08]
    assert tick_label(nice_ticks(-0.013, 0.087)[0]) == "0" and tick_label(3.4e6) == "3.4M"
    assert fitness_color(None, 1) == "#cccccc" and fitness_color(0.0, 1) == "#ffffbf"
    assert fitness_color(5.0, 1) == "#4575b4" and fitness_color(-5.0, 1) == "#d73027"


# ---------------------------------------------------------------- commands


def invoke(*args):
    return runner.invoke(report_app, list(map(str, args)), env=WIDE)


def test_leaderboard_command_table_json_and_limit(run_dir):
    result = invoke("leaderboard", "--run-dir", run_dir)
    assert result.exit_code == 0, result.output
    for text in (RESIZED, MUTANT, CROSS, "gpt2", "+0.0840 ±", "bpb 2.2900", "$0.04", "lm-xs"):
        assert text in result.output
    result = invoke("leaderboard", "--run-dir", run_dir, "--json", "--limit", "2")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["ladder"] == "cpu" and data["total"] == 5
    assert [d["design"] for d in data["designs"]] == [RESIZED, MUTANT]
    assert [d["rank"] for d in data["designs"]] == [1, 1]


def test_show_command(run_dir):
    result = invoke("show", MUTANT, "--run-dir", run_dir, "--markdown")
    assert result.exit_code == 0 and result.output.startswith(f"# {MUTANT}")
    rendered = invoke("show", MUTANT, "--run-dir", run_dir)
    assert rendered.exit_code == 0 and "SiLU" in rendered.output and "GeluMLP" in rendered.output
    assert "# " + MUTANT not in rendered.output  # rendered, not the markdown source


def test_report_command_prints_the_path(run_dir, tmp_path):
    out = tmp_path / "sub" / "r.html"
    result = invoke("report", "--run-dir", run_dir, "--out", out)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(out) and "plot-phylogeny" in out.read_text()
    result = invoke("report", "--run-dir", run_dir, "--out", tmp_path)
    assert result.exit_code == 2 and "is a directory" in result.output


def test_commands_on_bad_input(run_dir, tmp_path):
    unknown = invoke("show", "g0001a-mutaton", "--run-dir", run_dir)
    assert unknown.exit_code == 2 and "no design named 'g0001a-mutaton'" in unknown.output
    assert f"close names: {MUTANT}" in unknown.output
    missing = invoke("leaderboard", "--run-dir", tmp_path / "nowhere")
    assert missing.exit_code == 2 and "no run directory" in missing.output
    assert not (tmp_path / "nowhere").exists()
    ladder = invoke("leaderboard", "--run-dir", run_dir, "--ladder", "cpuu")
    assert ladder.exit_code == 2 and "did you mean cpu" in ladder.output
    limit = invoke("leaderboard", "--run-dir", run_dir, "--limit", "0")
    assert limit.exit_code == 2
    (tmp_path / "plain").mkdir()
    not_a_run = invoke("report", "--run-dir", tmp_path / "plain")
    assert not_a_run.exit_code == 2 and "holds no archive" in not_a_run.output


def test_commands_read_the_run_ladder_and_say_when_nothing_is_verified(tmp_path):
    fresh = tmp_path / "fresh"
    with open_archive(fresh):
        pass
    empty = invoke("leaderboard", "--run-dir", fresh)
    assert empty.exit_code == 2 and "no verified designs yet" in empty.output and "ladder cpu" in empty.output
    assert invoke("report", "--run-dir", fresh).exit_code == 2
    save_run_config(fresh, RunConfig(ladder="gpu", budget={"designs": 1}))
    on_gpu = invoke("leaderboard", "--run-dir", fresh)
    assert on_gpu.exit_code == 2 and "ladder gpu" in on_gpu.output
    (fresh / "run.json").write_text("{not json")
    corrupt = invoke("leaderboard", "--run-dir", fresh)
    assert corrupt.exit_code == 2 and "corrupt" in corrupt.output
