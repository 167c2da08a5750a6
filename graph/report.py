"""What a run found: the leaderboard (and the views built on it).

Fitness is each design's mean fitness against GPT-2 at the highest rung it reached,
with its noise; designs whose fitness differs by less than the noise share a rank
(verifier.fitness.rank).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.table import Table

from designs.catalog import open_archive
from graph.selection import view_from_archive
from verifier.fitness import TIE_Z, rank
from verifier.ladder import get_ladder


@dataclass
class Row:
    rank: int
    design: str
    parents: tuple[str, ...]
    mode: str
    rung: str
    fitness: float
    noise: float
    repeats: int
    params: int | None
    metrics: dict
    dollars: float
    title: str


def leaderboard(archive, ladder: str) -> list[Row]:
    """Every verified design, best first, ranks shared within the noise."""
    rungs = get_ladder(ladder)
    view = view_from_archive(archive, ladder)
    verified = {c.name: c for c in view.verified}
    ranked = rank({n: (c.fitness, c.sigma) for n, c in verified.items()}, TIE_Z)
    rows = []
    for name, r, fitness, noise in ranked:
        c = verified[name]
        record = archive.get_design(name)
        rung = rungs[c.rung].name
        runs = archive.verifications(design=name, rung=f"{ladder}/{rung}")
        metrics = _key_metrics(rungs[c.rung].kind, [v.metrics for v in runs])
        costs = archive.cost_summary(design=name)
        title = (record.proposal or {}).get("title", "") if isinstance(record.proposal, dict) else ""
        rows.append(Row(r, name, record.parents, record.mode, rung, fitness, noise, c.repeats,
                        metrics.pop("params", None), metrics, sum(v["dollars"] for v in costs.values()),
                        title or (record.family or "")))
    return rows


def _key_metrics(kind: str, runs: list[dict]) -> dict:
    def mean(key):
        values = [m[key] for m in runs if isinstance(m.get(key), (int, float))]
        return sum(values) / len(values) if values else None

    out = {"params": runs[0].get("params") if runs else None}
    if kind == "lm":
        out["bpb"] = mean("bpb")
    else:
        out["accuracy"] = mean("mean_accuracy")
    return out


def leaderboard_table(run_dir: Path, run, limit: int = 20) -> Table:
    archive = open_archive(run_dir)
    try:
        rows = leaderboard(archive, run.ladder)
    finally:
        archive.close()
    table = Table(title=f"leaderboard ({run.ladder} ladder; fitness = gain over GPT-2 at the highest rung reached)")
    for col, justify in (("#", "right"), ("design", "left"), ("parents", "left"), ("mode", "left"),
                         ("rung", "left"), ("fitness", "right"), ("params", "right"), ("metric", "right"),
                         ("cost $", "right"), ("about", "left")):
        table.add_column(col, justify=justify)
    for row in rows[:limit]:
        metric = ", ".join(f"{k} {v:.4f}" for k, v in row.metrics.items() if v is not None)
        table.add_row(str(row.rank), row.design, ", ".join(row.parents) or "-", row.mode, row.rung,
                      f"{row.fitness:+.4f} ± {row.noise:.4f}", f"{row.params:,}" if row.params else "-", metric,
                      f"{row.dollars:.2f}", row.title[:50])
    return table
