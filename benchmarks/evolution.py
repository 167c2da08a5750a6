"""Evolution throughput: designs verified per hour on the first rung with 1 and 2 workers, and the
orchestration overhead (wall time when no design session and no verification is running).

    .venv/bin/python benchmarks/evolution.py [--designs 4] [--scale 0.05]

Each run is a real `run_evolution` with the symbolic designer on the CPU ladder's lm-xs rung
(its tokens scaled), in a fresh run directory; the baseline's runs happen in setup and count as
verification time. Target: overhead under 5% of wall time.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from graph.evolution import Budget, RunConfig, run_evolution  # noqa: E402


def busy_union(intervals: list[tuple[float, float]]) -> float:
    """Total length covered by the intervals (overlaps counted once)."""
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def measure(workers: int, designs: int, scale: float) -> dict:
    run_dir = Path(tempfile.mkdtemp(prefix=f"genesys-evo-{workers}w-"))
    opened: dict[tuple, float] = {}
    intervals: list[tuple[float, float]] = []
    counts = {"verified": 0}

    def on_event(e: dict) -> None:
        now = time.monotonic()
        kind = e.get("event")
        if kind == "design":
            opened[("d", e["thread"])] = now
        elif kind == "designed":
            intervals.append((opened.pop(("d", e["thread"])), now))
        elif kind == "verify":
            opened[("v", e["design"], e["rung"], e["seed"])] = now
        elif kind == "verified":
            intervals.append((opened.pop(("v", e["design"], e["rung"], e["seed"])), now))
            if e["status"] == "ok" and e["design"] != "gpt2":
                counts["verified"] += 1

    run = RunConfig(rungs=["lm-xs"], scale=scale, workers=workers, baseline_repeats=1,
                    budget=Budget(designs=designs))
    started = time.monotonic()
    try:
        run_evolution(run_dir, run, on_event=on_event)
        wall = time.monotonic() - started
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    busy = busy_union(intervals)
    return {"workers": workers, "wall_s": wall, "verified": counts["verified"],
            "per_hour": counts["verified"] / wall * 3600, "overhead": (wall - busy) / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--designs", type=int, default=4)
    parser.add_argument("--scale", type=float, default=0.05)
    args = parser.parse_args()
    rows = [measure(w, args.designs, args.scale) for w in (1, 2)]
    print(f"{'workers':>7} {'wall s':>8} {'verified':>8} {'designs/h':>10} {'overhead':>9}")
    for r in rows:
        print(f"{r['workers']:>7} {r['wall_s']:>8.1f} {r['verified']:>8} {r['per_hour']:>10.1f} {r['overhead']:>8.1%}")
    print(f"2 workers / 1 worker throughput: {rows[1]['per_hour'] / max(rows[0]['per_hour'], 1e-9):.2f}x; "
          f"overhead target < 5%: {'PASS' if max(r['overhead'] for r in rows) < 0.05 else 'FAIL'}")


if __name__ == "__main__":
    main()
