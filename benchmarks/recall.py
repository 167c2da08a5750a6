"""Associative recall at small width: attention against a long-convolution mixer, over seeds and steps.

    python benchmarks/recall.py                                   # gpt2 and hyena, seeds 0-2, 500 and 1500 steps
    python benchmarks/recall.py --designs gpt2,hyena,mamba2 --steps 500,1000 --seeds 3

The published result (MAD, Poli et al. 2024; Zoology, Arora et al. 2023): at small width,
attention solves in-context associative recall while long-convolution mixers such as
Hyena do not. Each design is sized to the cpu `synthetic` rung's parameter target and
trained from scratch on the quick in_context_recall task (vocabulary 16, length 32) at
the rung's batch and lr, in the sandbox (entry "synthetic"), once per (steps, seed);
the score is accuracy on the recalled positions of the test split (chance 1/8: the
values are drawn from half the vocabulary). The rung trains 500 steps; the induction
circuit that solves the task forms abruptly (a phase transition), so whether it has
formed by then varies with the seed: the table shows how much.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from designs.seeds import load_seed  # noqa: E402
from verifier.ladder import get_rung  # noqa: E402
from verifier.sandbox import Limits, run_job  # noqa: E402

TASK = "in_context_recall"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--designs", default="gpt2,hyena")
    ap.add_argument("--steps", default="500,1500")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    rung = get_rung("cpu", "synthetic")
    designs = [d.strip() for d in args.designs.split(",") if d.strip()]
    step_counts = [int(s) for s in args.steps.split(",")]
    print(f"{TASK} (quick preset), {rung.target_params:,} non-embedding params, batch {rung.batch}, lr {rung.lr}, "
          f"seeds 0-{args.seeds - 1}, {args.threads} thread(s)", flush=True)
    table: dict[tuple[str, int], list[float]] = {}
    for steps in step_counts:
        for design in designs:
            source = load_seed(design).compose(include_tests=False)
            for seed in range(args.seeds):
                t = time.perf_counter()
                result = run_job("synthetic", source, name=design, limits=Limits(timeout_s=3600, threads=args.threads),
                                 args={"target_params": rung.target_params, "tasks": [TASK], "steps": steps,
                                       "batch": rung.batch, "lr": rung.lr, "seed": seed, "preset": "quick"})
                if not result.ok:
                    print(f"  {design} seed {seed} {steps} steps: {result.status}: {result.error}", flush=True)
                    continue
                acc = result.payload["accuracy"][TASK]
                table.setdefault((design, steps), []).append(acc)
                print(f"  {design:8s} {steps:5d} steps seed {seed}: accuracy {acc:.3f} "
                      f"(d_model {result.payload['d_model']} x {result.payload['n_block']}, "
                      f"{time.perf_counter() - t:.0f} s)", flush=True)
    print()
    print(f"| design | steps | accuracy per seed | mean | seeds >= 0.9 |")
    print("|---|---:|---|---:|---:|")
    for (design, steps), accs in table.items():
        print(f"| {design} | {steps} | {', '.join(f'{a:.2f}' for a in accs)} | {statistics.mean(accs):.3f} | "
              f"{sum(a >= 0.9 for a in accs)}/{len(accs)} |")


if __name__ == "__main__":
    main()
