"""Ladder presets, promotion by rank within budget, and fitness with its noise and ties."""

import math

import pytest

from verifier.fitness import combined, compare, rank, rung_score, spearman
from verifier.ladder import (LADDERS, PAPER_BENCHMARKS, LadderError, Standing, get_ladder, get_rung, next_rung,
                             promotions, scaled)


def test_cpu_ladder_rungs():
    names = [r.name for r in get_ladder("cpu")]
    assert names == ["synthetic", "lm-xs", "lm-s"]
    assert get_rung("cpu", "lm-xs").target_params == 500_000 and get_rung("cpu", "lm-s").target_params == 3_000_000
    assert get_rung("cpu", "synthetic").kind == "synthetic" and len(get_rung("cpu", "synthetic").eval_suite) == 4


def test_gpu_ladder_follows_the_paper():
    rungs = get_ladder("gpu")
    assert [r.target_params for r in rungs] == [14_000_000, 31_000_000, 70_000_000, 125_000_000, 350_000_000]
    assert [r.budget for r in rungs] == [256, 64, 16, 4, 1]
    assert [r.tokens // r.target_params for r in rungs] == [50, 40, 30, 20, 20]
    assert all(r.context == 2048 and r.eval_suite == PAPER_BENCHMARKS for r in rungs)


def test_unknown_names_are_clear_errors():
    with pytest.raises(LadderError, match="no ladder named 'cpuu' \\(did you mean cpu"):
        get_ladder("cpuu")
    with pytest.raises(LadderError, match="has no rung 'lm-m'.*rungs: synthetic, lm-xs, lm-s"):
        get_rung("cpu", "lm-m")


def test_next_rung_and_scaling():
    assert next_rung("cpu", "synthetic").name == "lm-xs" and next_rung("cpu", "lm-s") is None
    tiny = scaled(get_rung("cpu", "lm-xs"), 0.001)
    assert tiny.steps == 1 and tiny.tokens == tiny.batch * tiny.context
    assert get_rung("cpu", "lm-xs").to_dict()["steps"] == 2_000_000 // (16 * 256)


def test_promotion_takes_the_top_fraction_within_budget():
    rung, up = get_rung("cpu", "synthetic"), get_rung("cpu", "lm-xs")
    standings = [Standing(f"d{i}", fitness=i / 10, noise=0.001) for i in range(10)] + [Standing("gpt2", 0.0)]
    result = promotions(standings, rung, up, baselines=("gpt2",))
    assert result.promoted == ["d9", "d8", "d7", "d6", "d5"] and "gpt2" not in result.held
    capped = promotions(standings, get_rung("cpu", "lm-xs"), get_rung("cpu", "lm-s"), already_there=6,
                        baselines=("gpt2",))
    assert capped.promoted == ["d9", "d8"] and capped.over_budget == ["d7", "d6", "d5"]


def test_a_tie_with_the_last_promoted_design_climbs_too():
    standings = [Standing("a", 0.30, 0.01), Standing("b", 0.20, 0.01), Standing("c", 0.195, 0.01),
                 Standing("d", 0.0, 0.01)]
    result = promotions(standings, get_rung("cpu", "synthetic"), get_rung("cpu", "lm-xs"))
    assert result.promoted == ["a", "b", "c"] and result.held == ["d"]


def test_lm_fitness_is_relative_bpb_improvement_with_noise():
    base = [{"bpb": 2.00}, {"bpb": 2.02}, {"bpb": 1.98}]
    better = rung_score("lm-xs", "lm", {"bpb": 1.80}, base)
    assert better.fitness == pytest.approx(0.10) and better.baseline["bpb"] == pytest.approx(2.0)
    assert better.noise == pytest.approx(math.sqrt(2) * 0.02 / 2.0)
    same = rung_score("lm-xs", "lm", {"bpb": 2.01}, base)
    assert compare((same.fitness, same.noise), (0.0, same.noise)) == 0  # inside the noise: a tie


def test_synthetic_fitness_is_accuracy_gain():
    base = [{"accuracy": {"mqar": 0.9, "recall": 0.7}}, {"accuracy": {"mqar": 0.8, "recall": 0.8}}]
    score = rung_score("synthetic", "synthetic", {"accuracy": {"mqar": 0.5, "recall": 0.5}}, base)
    assert score.fitness == pytest.approx(-0.3)
    with pytest.raises(ValueError, match="verify the GPT-2 seed there first"):
        rung_score("lm-xs", "lm", {"bpb": 1.0}, [])


def test_combined_fitness_weighs_later_rungs_more():
    s1 = rung_score("synthetic", "synthetic", {"accuracy": {"t": 0.6}}, [{"accuracy": {"t": 0.5}}])
    s2 = rung_score("lm-xs", "lm", {"bpb": 1.9}, [{"bpb": 2.0}])
    value, noise = combined([s1, s2], ["synthetic", "lm-xs", "lm-s"])
    assert value == pytest.approx((0.1 + 2 * 0.05) / 3) and noise > 0
    assert math.isnan(combined([], ["x"])[0])


def test_ranking_reports_ties():
    ranked = rank({"a": (0.10, 0.01), "b": (0.095, 0.01), "c": (-0.2, 0.01)})
    assert [(n, r) for n, r, *_ in ranked] == [("a", 1), ("b", 1), ("c", 3)]
    # gaps of 0.03 at noise 0.012 each (a pair ties within 2 x sqrt(2) x 0.012 = 0.034 at z=2): a ties b,
    # b ties c, but a is clearly better than c: c starts a new group instead of inheriting a's rank
    chain = rank({"a": (0.30, 0.012), "b": (0.27, 0.012), "c": (0.24, 0.012), "d": (0.23, 0.012)}, z=2.0)
    assert [(n, r) for n, r, *_ in chain] == [("a", 1), ("b", 1), ("c", 3), ("d", 3)]


def test_spearman():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486833, rel=1e-6)


def test_every_preset_is_well_formed():
    for name, rungs in LADDERS.items():
        assert len({r.name for r in rungs}) == len(rungs)
        assert all(r.steps >= 1 and r.lr > 0 and 0 < r.promote_fraction <= 1 for r in rungs), name


def test_mean_fitness_shrinks_the_designs_share_of_the_noise_with_repeats():
    from verifier.fitness import mean_fitness

    base = [{"bpb": 2.00}, {"bpb": 2.04}, {"bpb": 1.96}]
    one = mean_fitness("lm-xs", "lm", [{"bpb": 1.90}], base)
    four = mean_fitness("lm-xs", "lm", [{"bpb": 1.90}, {"bpb": 1.92}, {"bpb": 1.88}, {"bpb": 1.90}], base)
    single = rung_score("lm-xs", "lm", {"bpb": 1.90}, base)
    assert one.fitness == pytest.approx(single.fitness) and one.sigma == pytest.approx(single.noise)
    assert four.repeats == 4 and four.fitness == pytest.approx(0.05)
    assert four.sigma == pytest.approx(single.noise * math.sqrt(0.625))
    with pytest.raises(ValueError, match="no runs"):
        mean_fitness("lm-xs", "lm", [], base)
