"""Wall time of a full design check per seed, and what the sandbox costs.

For each seed, side by side in one run:
  check_s      a full check as the coder's loop runs it: verifier.checker.check_tree with
               default options (format check, then in the sandbox: build, unit tests,
               forward, causality, gradients, parameter count, 40 training steps, efficiency
               against GPT-2 at 1M parameters). Target: under 20 s for a ~1M-parameter design.
  inproc_ms    bare forward+backward of the same model (sized to 1M non-embedding
               parameters, batch 4 x 256) in this process, torch already imported.
  sandbox_ms   the same forward+backward as a sandbox job: a fresh child process in its own
               namespaces, importing torch, building the model, one step.
  overhead     sandbox_ms - inproc_ms: the fixed price of isolation per job (process start,
               namespaces, torch import); ratio = sandbox_ms / inproc_ms.

    python benchmarks/checker.py                    # every seed
    python benchmarks/checker.py --seeds gpt2 gla   # some
    python benchmarks/checker.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from designs.model import load_design_module  # noqa: E402
from designs.seeds import load_seed, seed_names  # noqa: E402
from designs.sizing import fit_config  # noqa: E402
from verifier.checker import CheckOptions, check_tree  # noqa: E402
from verifier.sandbox import Limits, run_job  # noqa: E402

# One step function for both sides: appended to the design's source for the sandbox job, and
# executed into the (trusted seed) module's namespace for the in-process measurement.
STEP = '''

def _benchmark_step(d_model, n_block, batch, seq_len, steps):
    import time as _time
    torch.manual_seed(0)
    model = build_model(d_model=d_model, n_block=n_block, vocab_size=256)
    x = torch.randint(0, 256, (batch, seq_len + 1))
    times = []
    for _ in range(steps):
        t0 = _time.perf_counter()
        model.loss(x).backward()
        times.append(_time.perf_counter() - t0)
    return times
'''


def step_in_process(module, d_model, n_block, batch, seq_len, steps) -> list[float]:
    exec(STEP, module.__dict__)  # trusted seed code, as load_design_module already ran it here
    return module._benchmark_step(d_model, n_block, batch, seq_len, steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="*", default=seed_names())
    parser.add_argument("--target", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    rows = []
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}")
    print(f"{'seed':15s} {'check_s':>8s} {'ok':>3s} {'stages (s)':48s} {'inproc_ms':>9s} {'sandbox_ms':>10s} "
          f"{'overhead_s':>10s} {'ratio':>6s}")
    for name in args.seeds:
        tree = load_seed(name)
        t0 = time.perf_counter()
        _, report = check_tree(tree, CheckOptions())
        check_s = time.perf_counter() - t0
        module = load_design_module(tree)  # trusted seed code: fine in this process
        cfg = fit_config(module, args.target)
        step_args = (cfg.d_model, cfg.n_block, args.batch, args.seq_len)
        inproc = step_in_process(module, *step_args, steps=3)
        inproc_ms = statistics.median(inproc[1:]) * 1e3 + 0.0
        first_inproc_ms = inproc[0] * 1e3
        t0 = time.perf_counter()
        result = run_job("exec", tree.compose(include_tests=False) + STEP, name=name, limits=Limits(timeout_s=300),
                         args={"call": "_benchmark_step", "kwargs": dict(zip(
                             ("d_model", "n_block", "batch", "seq_len"), step_args), steps=1)})
        sandbox_ms = (time.perf_counter() - t0) * 1e3
        assert result.ok, result.summary()
        stages = report.metrics.get("stage_seconds", {})
        stage_text = " ".join(f"{k[:5]} {v:.1f}" for k, v in stages.items() if v >= 0.1)
        row = {"seed": name, "check_s": round(check_s, 2), "ok": report.ok, "stages": stages,
               "d_model": cfg.d_model, "n_block": cfg.n_block, "params": cfg.non_embedding_params,
               "inproc_first_step_ms": round(first_inproc_ms, 1), "inproc_ms": round(inproc_ms, 1),
               "sandbox_ms": round(sandbox_ms, 1), "overhead_s": round((sandbox_ms - first_inproc_ms) / 1e3, 2),
               "ratio": round(sandbox_ms / first_inproc_ms, 2), "vs_gpt2": report.metrics.get("vs_gpt2")}
        rows.append(row)
        print(f"{name:15s} {check_s:8.1f} {'yes' if report.ok else 'NO':>3s} {stage_text:48s} "
              f"{first_inproc_ms:9.0f} {sandbox_ms:10.0f} {row['overhead_s']:10.2f} {row['ratio']:6.1f}", flush=True)
    checks = [r["check_s"] for r in rows]
    print(f"\nfull check: median {statistics.median(checks):.1f} s, max {max(checks):.1f} s "
          f"(target < 20 s at ~1M parameters: {'PASS' if max(checks) < 20 else 'FAIL'}); "
          f"sandbox overhead per job: median {statistics.median(r['overhead_s'] for r in rows):.2f} s")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "torch": torch.__version__, "cores": os.cpu_count()}, indent=1))


if __name__ == "__main__":
    main()
