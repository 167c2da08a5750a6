"""Selection: mode statistics, quadrants, crossover gating, ties, novelty, the archive view, MAP-Elites."""

import json
import math
import random
from collections import Counter
from types import SimpleNamespace

import pytest

from designs.archive import Archive
from designs.catalog import open_archive
from designs.seeds import load_seed
from graph.selection import (
    ArchiveView,
    Candidate,
    MapElitesSelection,
    PaperSelection,
    SelectionConfig,
    SelectionError,
    flops_bin,
    get_strategy,
    is_novel,
    standings,
    view_from_archive,
)

# Chi-square critical values at alpha = 0.001 by degrees of freedom: a correct sampler
# fails one of these checks once in a thousand seeds; the seeds are fixed, so never.
CHI2_CRIT_001 = {1: 10.83, 2: 13.82, 3: 16.27, 4: 18.47, 5: 20.52}

LIBRARY = {
    "attn-a": SimpleNamespace(seeds=["gpt2"]),
    "attn-b": SimpleNamespace(seeds=["gpt2", "llama"]),
    "gla-a": SimpleNamespace(seeds=["gla"]),
    "ssm-a": SimpleNamespace(seeds=["mamba2"]),
    "misc-a": SimpleNamespace(seeds=[]),
    "misc-b": SimpleNamespace(seeds=[]),
}


def cand(name, fitness=None, sigma=0.005, rung=-1, repeats=1, family=None, seed=False, fpp=None):
    return Candidate(name=name, fingerprint=f"fp-{name}", family=family or name, fitness=fitness, sigma=sigma,
                     rung=rung, repeats=repeats if fitness is not None else 0, is_seed=seed, flops_per_param=fpp)


def quadrant_view():
    """a: good + confident, b: good + unconfident, c: poor + confident, d: poor + unconfident."""
    return ArchiveView((
        cand("gpt2", 0.0, rung=2, repeats=3, seed=True),
        cand("a", 0.10, rung=2, family="gpt2"),
        cand("b", 0.08, rung=0, family="gpt2"),
        cand("c", -0.10, rung=2, family="gpt2"),
        cand("d", -0.08, rung=0, family="gpt2"),
        cand("llama", seed=True),  # a seed never verified
        cand("e", family="gpt2"),  # implemented, not verified yet
    ))


def chi_square(counts: Counter, probs: dict, n: int) -> float:
    return sum((counts[k] - n * p) ** 2 / (n * p) for k, p in probs.items() if p > 0)


def draws(strategy, view, n, seed=0):
    rng = random.Random(seed)
    return [strategy.select(view, rng) for _ in range(n)]


# ---------------------------------------------------------------- modes


def test_mode_frequencies_match_the_configured_probabilities():
    strategy = PaperSelection(library=LIBRARY)
    n = 4000
    counts = Counter(s.mode for s in draws(strategy, quadrant_view(), n))
    probs = {"mutation": 0.80, "crossover": 0.15, "scratch": 0.05}
    assert set(counts) == set(probs)
    assert chi_square(counts, probs, n) < CHI2_CRIT_001[2]
    for mode, p in probs.items():  # and each within 4.5 binomial standard deviations
        assert abs(counts[mode] - n * p) < 4.5 * math.sqrt(n * p * (1 - p)), (mode, counts)


def test_custom_mode_probabilities_are_followed():
    config = SelectionConfig(mode_probs={"mutation": 0.5, "crossover": 0.3, "scratch": 0.2})
    n = 3000
    counts = Counter(s.mode for s in draws(PaperSelection(config, LIBRARY), quadrant_view(), n, seed=3))
    assert chi_square(counts, dict(config.mode_probs), n) < CHI2_CRIT_001[2]


def test_crossover_waits_for_enough_verified_designs_and_its_mass_is_redistributed():
    view = ArchiveView((cand("gpt2", 0.0, rung=1, seed=True), cand("a", 0.05, rung=0, family="gpt2"),
                        cand("llama", seed=True)))
    strategy = PaperSelection(SelectionConfig(crossover_min_designs=3), LIBRARY)
    assert not strategy.crossover_ready(view)
    n = 3000
    counts = Counter(s.mode for s in draws(strategy, view, n, seed=1))
    assert counts["crossover"] == 0
    probs = {"mutation": 0.80 / 0.85, "scratch": 0.05 / 0.85}
    assert chi_square(counts, probs, n) < CHI2_CRIT_001[1]
    richer = ArchiveView(view.candidates + (cand("b", 0.01, rung=0, family="gpt2"),))
    assert strategy.crossover_ready(richer)
    assert any(s.mode == "crossover" for s in draws(strategy, richer, 200))


def test_an_empty_archive_only_allows_scratch():
    assert {s.mode for s in draws(PaperSelection(library=LIBRARY), ArchiveView(), 100)} == {"scratch"}
    no_scratch = SelectionConfig(mode_probs={"mutation": 0.9, "crossover": 0.1, "scratch": 0.0})
    with pytest.raises(SelectionError, match="no mode is possible"):
        PaperSelection(no_scratch, LIBRARY).select(ArchiveView(), random.Random(0))


@pytest.mark.parametrize("kwargs, message", [
    ({"mode_probs": {"mutation": 0.8, "crossover": 0.1}}, "sum to 1"),
    ({"mode_probs": {"mutation": 0.8, "crossover": 0.15, "sratch": 0.05}}, "unknown sratch"),
    ({"tactic_probs": {"exploit": 1.2, "explore": -0.2}}, ">= 0"),
    ({"crossover_parents": 1}, "at least 2 parents"),
    ({"crossover_min_designs": 1}, "crossover_min_designs"),
])
def test_bad_configuration_is_refused_with_a_clear_message(kwargs, message):
    with pytest.raises(SelectionError, match=message):
        SelectionConfig(**kwargs)


# ---------------------------------------------------------------- quadrants


def only_mutation(**tactics):
    probs = {"exploit": 0.0, "explore": 0.0, "restart": 0.0} | tactics
    return SelectionConfig(mode_probs={"mutation": 1.0, "crossover": 0.0, "scratch": 0.0}, tactic_probs=probs)


def test_standings_split_rank_and_confidence_into_quadrants():
    table = {s.candidate.name: s for s in standings(quadrant_view())}
    assert set(table) == {"gpt2", "a", "b", "c", "d"}  # unverified designs have no standing
    assert [(n, table[n].good, table[n].confident) for n in ("a", "b", "c", "d")] == [
        ("a", True, True), ("b", True, False), ("c", False, True), ("d", False, False)]
    assert table["a"].rank == 1 and table["c"].rank == 5
    # more repeats at the same rung and noise give more confidence, never a rung's worth
    low, high = (standings(ArchiveView((cand("x", 0.0, rung=1, repeats=r), cand("y", 0.0, rung=0))))[0]
                 for r in (1, 4))
    assert low.confidence < high.confidence < 3


def test_exploit_takes_good_confident_designs_favouring_the_better_ranked():
    n = 2000
    picks = draws(PaperSelection(only_mutation(exploit=1.0), LIBRARY), quadrant_view(), n)
    counts = Counter(s.parents[0] for s in picks)
    assert set(counts) == {"a", "gpt2"}  # the good-and-confident quadrant
    assert {s.reason for s in picks} == {"exploit: good and confident"}
    # weights 1/rank: a is rank 1, gpt2 rank 3
    assert chi_square(counts, {"a": 0.75, "gpt2": 0.25}, n) < CHI2_CRIT_001[1]


def test_explore_takes_poor_but_confident_designs():
    picks = draws(PaperSelection(only_mutation(explore=1.0), LIBRARY), quadrant_view(), 300)
    assert {s.parents for s in picks} == {("c",)}
    assert {s.reason for s in picks} == {"explore: poor and confident"}


def test_restart_takes_seeds_whether_verified_or_not():
    counts = Counter(s.parents[0] for s in draws(PaperSelection(only_mutation(restart=1.0), LIBRARY),
                                                 quadrant_view(), 1000))
    assert set(counts) == {"gpt2", "llama"}
    assert chi_square(counts, {"gpt2": 0.5, "llama": 0.5}, 1000) < CHI2_CRIT_001[1]


def test_tactic_frequencies_follow_the_configuration():
    n = 3000
    picks = draws(PaperSelection(only_mutation(exploit=0.65, explore=0.25, restart=0.10), LIBRARY),
                  quadrant_view(), n, seed=7)
    counts = Counter(s.reason.split(":")[0] for s in picks)
    assert chi_square(counts, {"exploit": 0.65, "explore": 0.25, "restart": 0.10}, n) < CHI2_CRIT_001[2]


def test_an_empty_quadrant_falls_back_and_says_so():
    # only seeds verified: no poor-and-confident design to explore
    view = ArchiveView((cand("gpt2", 0.0, rung=0, seed=True), cand("llama", seed=True)))
    picks = draws(PaperSelection(only_mutation(explore=1.0), LIBRARY), view, 50)
    assert {s.parents for s in picks} == {("gpt2",)}
    assert {s.reason for s in picks} == {"explore: verified"}
    unverified = ArchiveView((cand("llama", seed=True),))
    assert {s.reason for s in draws(PaperSelection(only_mutation(exploit=1.0), LIBRARY), unverified, 20)} == {
        "exploit: seed"}


# ---------------------------------------------------------------- ties


def test_designs_tied_within_the_noise_share_a_rank_and_are_drawn_alike():
    view = ArchiveView((cand("x", 0.050, sigma=0.01, rung=1), cand("y", 0.049, sigma=0.01, rung=1),
                        cand("z", -0.20, sigma=0.01, rung=1)))
    table = {s.candidate.name: s for s in standings(view)}
    assert table["x"].rank == table["y"].rank == 1 and table["z"].rank == 3
    n = 2000
    counts = Counter(s.parents[0] for s in draws(PaperSelection(only_mutation(exploit=1.0), LIBRARY), view, n))
    assert set(counts) == {"x", "y"}
    assert chi_square(counts, {"x": 0.5, "y": 0.5}, n) < CHI2_CRIT_001[1]


def test_a_tie_at_the_median_puts_both_designs_in_the_good_half():
    view = ArchiveView((cand("p", 0.30, rung=1), cand("q", 0.10, sigma=0.02, rung=1),
                        cand("r", 0.09, sigma=0.02, rung=1), cand("s", -0.3, rung=1)))
    good = {s.candidate.name for s in standings(view) if s.good}
    assert good == {"p", "q", "r"}
    # the same gap beyond the noise splits them
    sharp = ArchiveView((cand("p", 0.30, rung=1), cand("q", 0.10, sigma=0.001, rung=1),
                         cand("r", 0.09, sigma=0.001, rung=1), cand("s", -0.3, rung=1)))
    assert {s.candidate.name for s in standings(sharp) if s.good} == {"p", "q"}


# ---------------------------------------------------------------- crossover and references


def test_crossover_parents_are_distinct_and_come_from_the_good_half_first():
    config = SelectionConfig(mode_probs={"mutation": 0.0, "crossover": 1.0, "scratch": 0.0})
    picks = draws(PaperSelection(config, LIBRARY), quadrant_view(), 500)
    good = {"a", "b", "gpt2"}
    for s in picks:
        assert s.mode == "crossover" and len(s.parents) == 2 and len(set(s.parents)) == 2
        assert set(s.parents) <= good


def test_references_mix_the_parents_papers_with_the_rest_and_show_other_designs():
    config = SelectionConfig(library_references=2, design_references=2,
                             mode_probs={"mutation": 1.0, "crossover": 0.0, "scratch": 0.0},
                             tactic_probs={"exploit": 1.0, "explore": 0.0, "restart": 0.0})
    for s in draws(PaperSelection(config, LIBRARY), quadrant_view(), 200):
        assert len(s.references) == 2 and len(set(s.references)) == 2
        assert set(s.references) & {"attn-a", "attn-b"}  # one from the parent family's papers (gpt2)
        assert len(s.reference_designs) == 2 and not set(s.reference_designs) & set(s.parents)
        assert set(s.reference_designs) <= {"gpt2", "a", "b", "c", "d"}  # verified designs only


def test_references_from_the_packaged_library():
    from knowledge.library import load_library

    library = load_library()
    picks = draws(PaperSelection(), quadrant_view(), 30)
    assert all(len(s.references) == 3 and set(s.references) <= set(library) for s in picks)
    selection = picks[0]
    assert json.loads(json.dumps(selection.to_dict()))["mode"] == selection.mode


# ---------------------------------------------------------------- the view of a real archive


def test_view_from_archive_scores_designs_at_their_highest_rung(tmp_path):
    gpt2, llama = load_seed("gpt2"), load_seed("llama")
    with Archive.open(tmp_path / "run") as archive:
        archive.record_design("gpt2", gpt2.to_dict(), gpt2.fingerprint(), mode="seed", status="seed")
        archive.record_design("kid", llama.to_dict(), llama.fingerprint(), mode="mutation", status="verified",
                              parents=["gpt2"])
        archive.record_design("broken", {"x": 1}, "fp-broken", mode="mutation", status="failed",
                              parents=["kid"])
        fp = dict(corpus_fp="c", tokenizer_fp="t", wall_time_s=1.0)
        for seed, bpb in enumerate((2.00, 2.02, 1.98)):
            archive.record_verification("gpt2", rung="cpu/lm-xs", seed=seed, metrics={"bpb": bpb}, **fp)
        archive.record_verification("gpt2", rung="cpu/synthetic", seed=0, metrics={"accuracy": {"t": 0.5}}, **fp)
        archive.record_verification("kid", rung="cpu/synthetic", seed=0, metrics={"accuracy": {"t": 0.9}}, **fp)
        archive.record_verification("kid", rung="cpu/lm-xs", seed=0, metrics={
            "bpb": 1.90, "flops_per_token": 4.0e6, "params": 500_000}, **fp)
        archive.record_verification("kid", rung="gpu/14M", seed=0, metrics={"bpb": 0.1}, **fp)  # other ladder
        view = view_from_archive(archive, "cpu")
    by_name = {c.name: c for c in view.candidates}
    assert set(by_name) == {"gpt2", "kid"}  # the failed design is no candidate...
    assert view.find_by_fingerprint("fp-broken") == ["broken"]  # ...but its code is known
    kid = by_name["kid"]
    assert kid.rung == 1 and kid.repeats == 1 and kid.family == "gpt2" and not kid.is_seed
    assert kid.fitness == pytest.approx((2.0 - 1.9) / 2.0)
    assert kid.sigma == pytest.approx(math.sqrt(2) * 0.02 / 2.0)  # baseline spread, two runs' worth
    assert kid.flops_per_param == pytest.approx(8.0)
    base = by_name["gpt2"]
    assert base.is_seed and base.rung == 1 and base.repeats == 3 and base.fitness == pytest.approx(0.0)
    assert base.sigma == pytest.approx(math.sqrt(2) * 0.01 * math.sqrt((1 + 1 / 3) / 2))


# ---------------------------------------------------------------- novelty


def test_novelty_by_fingerprint_in_a_view():
    view = quadrant_view()
    verdict = is_novel("fp-a", view)
    assert not verdict and verdict.duplicate_of == ("a",) and "same code as a" in verdict.reason
    assert is_novel("fp-new", view)


def test_novelty_against_a_real_archive(tmp_path):
    gpt2 = load_seed("gpt2")
    with open_archive(tmp_path / "run") as archive:
        assert is_novel(gpt2, archive)  # the design itself, already recorded under its own name
        assert is_novel(gpt2.fingerprint(), archive, name="gpt2")  # the same, by fingerprint
        assert not is_novel(gpt2.fingerprint(), archive)  # an unnamed design with gpt2's code
        copy = gpt2.replace("GeluMLP", gpt2.units["GeluMLP"].code + "\n# a comment changes nothing\n")
        copy.name = "gpt2_copy"
        verdict = is_novel(copy, archive)
        assert not verdict and verdict.duplicate_of == ("gpt2",)
        mutated = gpt2.replace("GeluMLP", gpt2.units["GeluMLP"].code.replace("gelu", "silu"))
        mutated.name = "gpt2_silu"
        assert mutated.fingerprint() != gpt2.fingerprint()
        assert is_novel(mutated, archive).novel


def test_novelty_with_a_nearest_design_function():
    tree = load_seed("gla")
    tree.name = "fresh"
    view = quadrant_view()
    calls = []

    def nearest(t):
        calls.append(t.name)
        return [("fresh", 1.0), ("a", 0.97), ("b", 0.60)]  # itself is ignored

    verdict = is_novel(tree, view, nearest)
    assert calls == ["fresh"] and not verdict and "too close to a (similarity 0.970" in verdict.reason
    assert verdict.nearest == (("a", 0.97), ("b", 0.60))
    assert is_novel(tree, view, nearest, threshold=0.98)
    assert is_novel(tree.fingerprint(), view, nearest)  # a bare fingerprint cannot be embedded
    with pytest.raises(TypeError, match="UnitTree or a fingerprint"):
        is_novel(42, view)


# ---------------------------------------------------------------- MAP-Elites


def qd_view():
    return ArchiveView((
        cand("gpt2", 0.0, rung=1, seed=True, fpp=8.0),
        cand("g1", 0.20, rung=1, family="gpt2", fpp=8.5),  # the elite of (gpt2, 6)
        cand("g2", 0.21, sigma=0.05, rung=0, family="gpt2", fpp=32.0),  # (gpt2, 10)
        cand("g3", 0.20, sigma=0.05, rung=1, family="gpt2", fpp=33.0),  # tied with g2, more confident
        cand("gla", -0.30, rung=1, seed=True, fpp=8.0),  # a weak niche of its own
        cand("llama", seed=True),
    ))


def test_map_elites_keeps_one_elite_per_family_and_flops_cell():
    elites = MapElitesSelection(library=LIBRARY).cells(qd_view())
    assert flops_bin(cand("x", fpp=8.0)) == 6 and flops_bin(cand("y")) is None
    assert elites == {("gpt2", 6): qd_view().candidates[1], ("gpt2", 10): qd_view().candidates[3],
                      ("gla", 6): qd_view().candidates[4]}


def test_map_elites_draws_cells_uniformly_so_weak_niches_are_explored():
    config = SelectionConfig(mode_probs={"mutation": 1.0, "crossover": 0.0, "scratch": 0.0})
    n = 3000
    picks = draws(get_strategy("map-elites", config, LIBRARY), qd_view(), n)
    counts = Counter(s.parents[0] for s in picks)
    assert set(counts) == {"g1", "g3", "gla"}
    assert chi_square(counts, dict.fromkeys(counts, 1 / 3), n) < CHI2_CRIT_001[2]
    crossover = SelectionConfig(mode_probs={"mutation": 0.0, "crossover": 1.0, "scratch": 0.0})
    for s in draws(MapElitesSelection(crossover, LIBRARY), qd_view(), 100):
        assert len(set(s.parents)) == 2 and set(s.parents) <= {"g1", "g3", "gla"}


def test_map_elites_restarts_from_seeds_before_anything_is_verified():
    view = ArchiveView((cand("llama", seed=True), cand("gla", seed=True)))
    picks = draws(MapElitesSelection(library=LIBRARY), view, 200)
    assert {s.mode for s in picks} == {"mutation", "scratch"}
    assert {p for s in picks for p in s.parents} == {"llama", "gla"}


def test_strategies_are_found_by_name():
    assert isinstance(get_strategy("paper"), PaperSelection)
    with pytest.raises(SelectionError, match="strategies: paper, map-elites"):
        get_strategy("tournament")
