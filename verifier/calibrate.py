"""Calibrating a ladder: train the seeds on every rung, measure the noise, check the rungs agree.

    python cli.py ladder calibrate --ladder cpu

For each rung, every seed design is verified (the GPT-2 seed `repeats` times with
different training seeds, which measures the rung's noise); the last rung takes only
`last_rung_seeds` designs (it is the expensive one). Fitness is computed per rung
against GPT-2 (verifier.fitness), and the Spearman rank correlation of fitness between
consecutive rungs says whether a cheap rung predicts the next one. A design trained
several times (the baseline) shows the mean of its runs, each run's figure beside it.
Results land in
the archive and in `RUN_DIR/calibration/LADDER.{md,json}`; a run killed midway picks
up where it stopped (verifications already in the archive are reused).
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from designs.seeds import load_seed
from verifier.fitness import rung_score, spearman
from verifier.ladder import get_ladder
from verifier.verify import RungResult, verify_design

BASELINE = "gpt2"


def _stored(archive, design: str, rung_key: str, seed: int) -> RungResult | None:
    for v in archive.verifications(design=design, rung=rung_key):
        if v.seed == seed:
            return RungResult(design, rung_key.split("/", 1)[1], seed, "ok", dict(v.metrics), wall_s=v.wall_time_s)
    return None


def calibrate(ladder: str, run_dir: Path, archive, seeds: list[str], last_rung_seeds: list[str], repeats: int = 3,
              scale: float = 1.0, progress=None) -> dict:
    rungs = get_ladder(ladder)
    results: dict[str, dict[str, list[RungResult]]] = {}
    for i, rung in enumerate(rungs):
        names = last_rung_seeds if i == len(rungs) - 1 and len(rungs) > 1 else seeds
        names = [BASELINE] + [n for n in names if n != BASELINE]
        for name in names:
            for seed in range(repeats if name == BASELINE else 1):
                key = f"{ladder}/{rung.name}"
                result = _stored(archive, name, key, seed)
                if result is None:
                    if progress:
                        progress({"design": name, "rung": rung.name, "seed": seed})
                    started = time.monotonic()
                    result = verify_design(load_seed(name), ladder, rung.name, run_dir, seed=seed, scale=scale,
                                           check=False, archive=archive)
                    result.wall_s = result.wall_s or time.monotonic() - started
                results.setdefault(rung.name, {}).setdefault(name, []).append(result)
    return summarize(ladder, results, run_dir)


def _metric_view(kind: str, metrics: dict) -> dict:
    if kind == "synthetic":
        return {"accuracy": metrics.get("accuracy", {})}
    return {"bpb": metrics.get("bpb")}


def summarize(ladder: str, results: dict, run_dir: Path) -> dict:
    rungs = {r.name: r for r in get_ladder(ladder)}
    table, fitness = [], {}
    for rung_name, by_design in results.items():
        kind = rungs[rung_name].kind
        base = [_metric_view(kind, r.metrics) for r in by_design.get(BASELINE, []) if r.ok]
        for name, runs in by_design.items():
            ok = [r for r in runs if r.ok]
            row = {"design": name, "rung": rung_name, "status": runs[0].status if not ok else "ok", "runs": len(runs),
                   "wall_s": round(statistics.mean(r.wall_s for r in runs), 1),
                   "error": next((r.error for r in runs if not r.ok), "")}
            if ok and base:  # a design with several runs (the baseline): the mean of its runs' scores
                scores = [rung_score(rung_name, kind, _metric_view(kind, r.metrics), base) for r in ok]
                row.update(fitness=round(statistics.mean(s.fitness for s in scores), 4),
                           noise=round(scores[0].noise, 4))
                fitness.setdefault(rung_name, {})[name] = row["fitness"]
            if ok:
                if kind == "synthetic":
                    tasks = ok[0].metrics.get("accuracy", {})
                    row["accuracy"] = {t: round(statistics.mean(r.metrics["accuracy"][t] for r in ok), 3)
                                       for t in tasks}
                    row["mean_accuracy"] = round(statistics.mean(r.metrics.get("mean_accuracy", 0.0) for r in ok), 3)
                    row["per_run"] = [round(r.metrics.get("mean_accuracy", 0.0), 3) for r in ok]
                else:
                    row.update(bpb=round(statistics.mean(r.metrics["bpb"] for r in ok), 4),
                               tokens_per_s=round(statistics.mean(r.metrics["tokens_per_s"] for r in ok)),
                               params=ok[0].metrics["params"], per_run=[round(r.metrics["bpb"], 4) for r in ok])
            table.append(row)
    names = list(results)
    correlations = []
    for a, b in zip(names, names[1:]):
        common = sorted(set(fitness.get(a, {})) & set(fitness.get(b, {})))
        if len(common) >= 3:
            rho = spearman([fitness[a][d] for d in common], [fitness[b][d] for d in common])
            correlations.append({"from": a, "to": b, "designs": len(common), "spearman": round(rho, 3)})
    out = {"ladder": ladder, "rows": table, "correlations": correlations}
    folder = Path(run_dir) / "calibration"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{ladder}.json").write_text(json.dumps(out, indent=1))
    (folder / f"{ladder}.md").write_text(to_markdown(out))
    return out


def to_markdown(out: dict) -> str:
    lines = [f"# Calibration of the {out['ladder']} ladder", "",
             "| rung | design | status | fitness | noise | metrics | wall s |", "|---|---|---|---:|---:|---|---:|"]
    for r in out["rows"]:
        runs = r.get("per_run") or []
        spread = f" (runs: {', '.join(f'{v:.3f}' for v in runs)})" if len(runs) > 1 else ""
        if "accuracy" in r:
            metrics = (f"mean acc {r['mean_accuracy']:.3f}{spread}: "
                       + ", ".join(f"{t} {a:.2f}" for t, a in r["accuracy"].items()))
        elif "bpb" in r:
            metrics = f"bpb {r['bpb']:.4f}{spread}, {r['tokens_per_s']:,} tok/s, {r['params']:,} params"
        else:
            metrics = r.get("error", "")[:80]
        fit = f"{r['fitness']:+.4f}" if "fitness" in r else ""
        noise = f"{r['noise']:.4f}" if "noise" in r else ""
        lines.append(f"| {r['rung']} | {r['design']}{' x' + str(r['runs']) if r['runs'] > 1 else ''} | "
                     f"{r['status']} | {fit} | {noise} | {metrics} | {r['wall_s']:.0f} |")
    lines += ["", "| rungs | designs | Spearman rho of fitness |", "|---|---:|---:|"]
    lines += [f"| {c['from']} -> {c['to']} | {c['designs']} | {c['spearman']:+.3f} |" for c in out["correlations"]]
    return "\n".join(lines) + "\n"
