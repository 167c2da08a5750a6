"""Fitness: how much better than GPT-2 a design is, per rung and across rungs, with its noise.

Every rung trains the GPT-2 seed under exactly the rung's settings on the same machine,
several times with different seeds (`Rung.repeats_for_noise`). A design's fitness at
a rung is relative to that baseline, so numbers compare across machines:

- language-modeling rungs: the relative improvement in validation bits per byte,
  (bpb_gpt2 - bpb) / bpb_gpt2 (0: as good as GPT-2; 0.05: 5% fewer bits), plus, when
  the rung has an lm-eval suite, the mean accuracy gain over GPT-2 on its tasks;
- synthetic rungs: the mean accuracy gain over GPT-2 across the suite's tasks.

The noise is the baseline's seed-to-seed standard deviation, carried into fitness
units; a difference between two designs smaller than `TIE_Z` combined standard
deviations is a tie, and rankings say so. Across rungs, fitness is the weighted mean
over the rungs a design reached, later (larger, more trusted) rungs weighing more.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass

TIE_Z = 2.0  # differences within this many combined standard deviations are ties
MIN_NOISE = 1e-4  # floor on noise, in fitness units (a single baseline run has no spread)


@dataclass
class RungScore:
    rung: str
    kind: str
    fitness: float
    noise: float  # standard deviation of `fitness` (from the baseline's seed-to-seed spread)
    metrics: dict  # the design's metrics at the rung
    baseline: dict  # the baseline's mean metrics at the rung

    def to_dict(self) -> dict:
        return asdict(self)


def _mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        raise ValueError("no baseline runs at this rung: verify the GPT-2 seed there first")
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _suite_accuracy(metrics: dict) -> float | None:
    acc = metrics.get("accuracy") or {}
    return statistics.mean(acc.values()) if acc else None


def rung_score(rung: str, kind: str, metrics: dict, baseline_runs: list[dict]) -> RungScore:
    """Fitness of one design's metrics at a rung against the baseline's repeated runs.

    metrics: {"bpb": float, "accuracy": {task: acc}} (lm rungs may have both; synthetic
    rungs have accuracy). baseline_runs: the same dicts for each baseline seed.
    """
    fitness, variance, baseline = 0.0, 0.0, {}
    if kind == "lm":
        mean, std = _mean_std([b["bpb"] for b in baseline_runs])
        fitness += (mean - metrics["bpb"]) / mean
        variance += (std / mean) ** 2
        baseline["bpb"] = mean
    if _suite_accuracy(metrics) is not None:
        accs = [_suite_accuracy(b) for b in baseline_runs]
        mean, std = _mean_std([a for a in accs if a is not None])
        fitness += _suite_accuracy(metrics) - mean
        variance += std ** 2
        baseline["accuracy"] = mean
    # The design's own run is as noisy as one baseline run: the difference has twice the variance.
    noise = max(MIN_NOISE, math.sqrt(2 * variance))
    return RungScore(rung, kind, fitness, noise, metrics, baseline)


@dataclass
class MeanFitness:
    """A design's fitness at one rung over its training seeds: per run, the mean, and the noise of the mean."""

    per_run: list[float]
    fitness: float
    sigma: float

    @property
    def repeats(self) -> int:
        return len(self.per_run)


def mean_fitness(rung: str, kind: str, runs: list[dict], baseline_runs: list[dict]) -> MeanFitness:
    """The one fitness every ranking uses (selection, promotion, leaderboard, report).

    One run differs from the baseline's mean with noise sigma_1 = rung_score's noise (the
    baseline's seed-to-seed spread, counted for both sides). With n seeds of the design the
    design's half of the variance shrinks as 1/n: sigma = sigma_1 * sqrt((1 + 1/n) / 2).
    """
    if not runs:
        raise ValueError(f"no runs of the design at {rung}")
    scores = [rung_score(rung, kind, m, baseline_runs) for m in runs]
    n = len(scores)
    return MeanFitness([s.fitness for s in scores], statistics.mean(s.fitness for s in scores),
                       scores[0].noise * math.sqrt((1 + 1 / n) / 2))


def combined(scores: list[RungScore], rung_order: list[str]) -> tuple[float, float]:
    """Weighted mean fitness over the rungs reached (rung i weighs 2^i) and its noise."""
    if not scores:
        return float("nan"), float("nan")
    weights = [2.0 ** rung_order.index(s.rung) for s in scores]
    total = sum(weights)
    value = sum(w * s.fitness for w, s in zip(weights, scores)) / total
    noise = math.sqrt(sum((w * s.noise) ** 2 for w, s in zip(weights, scores))) / total
    return value, noise


def compare(a: tuple[float, float], b: tuple[float, float], z: float = TIE_Z) -> int:
    """1 if a is better than b beyond the noise, -1 if worse, 0 for a tie."""
    gap = a[0] - b[0]
    if abs(gap) <= z * math.sqrt(a[1] ** 2 + b[1] ** 2):
        return 0
    return 1 if gap > 0 else -1


def rank(items: dict[str, tuple[float, float]], z: float = TIE_Z) -> list[tuple[str, int, float, float]]:
    """Designs best first as (name, rank, fitness, noise).

    A design shares the rank of the best design of the current tie group when it is tied with
    that design (inside the noise); ties do not chain, so a run of small gaps cannot tie a
    design with one it is clearly worse than.
    """
    order = sorted(items, key=lambda k: -items[k][0])
    out: list[tuple[str, int, float, float]] = []
    leader = None
    for i, name in enumerate(order):
        if leader is not None and compare(items[leader], items[name], z) == 0:
            r = out[-1][1]
        else:
            leader, r = name, i + 1
        out.append((name, r, *items[name]))
    return out


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman rank correlation (average ranks for ties)."""
    if len(x) != len(y) or len(x) < 2:
        raise ValueError("spearman needs two equal-length lists of at least 2 values")

    def ranks(v):
        order = sorted(range(len(v)), key=lambda i: v[i])
        r = [0.0] * len(v)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2 + 1
            i = j + 1
        return r

    rx, ry = ranks(x), ranks(y)
    mx, my = statistics.mean(rx), statistics.mean(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    var = math.sqrt(sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry))
    return cov / var if var else 0.0
