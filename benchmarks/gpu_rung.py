"""A rung of the `gpu` ladder, for real, on this machine's GPU: GPT-2 beside a recurrent seed, with MFU.

    python benchmarks/gpu_rung.py                                  # 14M rung: gpt2 and mamba2, full tokens
    python benchmarks/gpu_rung.py --time-budget 420 --out results/  # fit the tokens to 7 minutes

Every design goes through the product's own path, `verifier.verify.verify_design`: sized
to the rung's non-embedding parameter target in the sandbox, trained by verifier.train
inside the sandbox (accelerate, bf16 autocast on CUDA, the rung's batch, context, lr,
warmup + cosine, checkpoints), scored by validation loss and bits per byte on held-out
files. The model FLOP utilization (MFU) is the trainer's own: model FLOPs per token
(forward + backward, counted by designs.model.measure_flops) x tokens/s over the
device's nominal bf16 dense peak; beside it this script measures a large bf16 matmul on
the same GPU (the practical peak) and reports the model FLOP/s as a share of that too.

The rung's corpus (fineweb-edu) is out of reach on a machine with no network, so
`--corpus` defaults to the Python standard library of the interpreter (the CPU ladder's
corpus); the tokenizer stays the rung's own (BPE with a 32,768 vocabulary, here trained on
that corpus). The rung's lm-eval benchmarks need their datasets from the Hub: `--tasks`
defaults to none (`--tasks rung` runs the rung's own, `--tasks a,b` others).

`--time-budget S` fits the run into S seconds: a short probe of each design (a few
optimizer steps) measures its tokens/s, then every design trains the same fraction of
the rung's tokens (same data, same steps: comparable bpb), the largest that fits.
Nothing is recorded in an archive; the table and a JSON file go to `--out`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from designs.seeds import load_seed  # noqa: E402
from verifier.ladder import get_rung  # noqa: E402
from verifier.train import peak_flops  # noqa: E402
from verifier.verify import verify_design  # noqa: E402

PROBE_STEPS = 12
SAFETY = 0.85  # of the budget left after the probes: evaluation, sizing and start-up cost too


def stamp(started: float) -> str:
    return f"[{time.monotonic() - started:6.0f} s]"


def bf16_matmul_rate(n: int = 8192, repeats: int = 10) -> float:
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize()
    return 2 * n**3 * repeats / (time.perf_counter() - t)


class LogWatcher:
    """Prints the newest line of a training log every `every` seconds while a job runs."""

    def __init__(self, started: float, every: float = 30.0):
        self.started, self.every = started, every
        self.path: Path | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        seen = None
        while not self.stop.wait(self.every):
            if self.path is None or not self.path.is_file():
                continue
            lines = self.path.read_text().splitlines()
            if not lines or lines[-1] == seen:
                continue
            seen = lines[-1]
            try:
                e = json.loads(seen)
            except json.JSONDecodeError:
                continue
            if e.get("event"):
                print(f"{stamp(self.started)}   {e['event']} at step {e.get('step')}", flush=True)
                continue
            mfu = f", MFU {e['mfu']:.1%}" if e.get("mfu") else ""
            print(f"{stamp(self.started)}   step {e['step']}/{e['total_steps']}, loss {e['loss']:.3f}, "
                  f"{e['tokens_per_s'] or 0:,.0f} tok/s{mfu}", flush=True)

    def close(self) -> None:
        self.stop.set()


def run(design: str, args, scale: float, seed: int, run_dir: Path, started: float):
    watcher = LogWatcher(started)

    def progress(event: dict) -> None:
        if event.get("log"):
            watcher.path = Path(event["log"])
        print(f"{stamp(started)} {design}: {event.get('phase')}", flush=True)

    try:
        return verify_design(load_seed(design), args.ladder, args.rung, run_dir, seed=seed, scale=scale, check=False,
                             cache_dir=run_dir / "cache", progress=progress, threads=args.threads,
                             corpus=args.corpus, tokenizer=args.tokenizer, tasks=args.task_list)
    finally:
        watcher.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ladder", default="gpu")
    ap.add_argument("--rung", default="14M")
    ap.add_argument("--designs", default="gpt2,mamba2", help="comma-separated seed names")
    ap.add_argument("--corpus", default="stdlib")
    ap.add_argument("--tokenizer", default=None, help="default: the rung's own")
    ap.add_argument("--tasks", default="", help="lm-eval tasks after training: none (default), 'rung', or a,b")
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the rung's tokens (ignored with --time-budget)")
    ap.add_argument("--time-budget", type=float, default=None, help="seconds for the whole run")
    ap.add_argument("--threads", type=int, default=8, help="CPU threads of each training job")
    ap.add_argument("--run-dir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None, help="folder for gpu_rung.json and gpu_rung.md")
    args = ap.parse_args()
    args.task_list = None if args.tasks == "rung" else tuple(t for t in args.tasks.split(",") if t.strip())
    started = time.monotonic()
    if not torch.cuda.is_available():
        sys.exit("gpu_rung.py needs a CUDA GPU (torch.cuda.is_available() is False)")
    rung = get_rung(args.ladder, args.rung)
    designs = [d.strip() for d in args.designs.split(",") if d.strip()]
    run_dir = args.run_dir or Path(tempfile.mkdtemp(prefix="genesys-gpu-rung-"))
    gpu = torch.cuda.get_device_name(0)
    matmul = bf16_matmul_rate()
    nominal = peak_flops(torch.device("cuda"))
    print(f"{stamp(started)} {gpu}: bf16 8192^3 matmul {matmul / 1e12:.0f} TFLOP/s; nominal peak "
          f"{(nominal or 0) / 1e12:.0f} TFLOP/s. Rung {args.ladder}/{rung.name}: {rung.target_params:,} params, "
          f"{rung.tokens:,} tokens, context {rung.context}, batch {rung.batch}, lr {rung.lr}", flush=True)

    scale, probes, overhead = args.scale, {}, 0.0
    if args.time_budget:
        probe_scale = PROBE_STEPS * rung.batch * rung.context / rung.tokens
        for name in designs:
            r = run(name, args, probe_scale, 100, run_dir, started)
            if not r.ok:
                sys.exit(f"probe of {name} failed: {r.status}: {r.error}")
            probes[name] = r.metrics["tokens_per_s"]
            fixed = r.wall_s - r.metrics["tokens"] / probes[name]  # data, sizing, compiling, evaluation
            overhead += fixed
            print(f"{stamp(started)} probe {name}: {probes[name]:,.0f} tok/s, MFU {r.metrics['mfu'] or 0:.1%}, "
                  f"{r.wall_s:.0f} s for {r.metrics['tokens']:,} tokens ({fixed:.0f} s of it not training)",
                  flush=True)
        left = args.time_budget - (time.monotonic() - started) - overhead
        full_s = sum(rung.tokens / tps for tps in probes.values())
        scale = max(probe_scale, min(1.0, SAFETY * left / full_s))
        print(f"{stamp(started)} the full rung would take {full_s / 60:.1f} min of training for these designs; "
              f"{left:.0f} s left for training: {scale:.2%} of the rung's tokens", flush=True)

    rows = []
    for name in designs:
        r = run(name, args, scale, 0, run_dir, started)
        m = r.metrics
        row = {"design": name, "status": r.status, "error": r.error, "wall_s": r.wall_s, **{
            k: m.get(k) for k in ("params", "d_model", "n_block", "tokens", "steps", "tokens_per_s", "mfu",
                                  "flops_per_token", "bpb", "val_loss", "train_loss")}}
        if m.get("tokens_per_s") and m.get("flops_per_token"):
            row["model_tflops"] = m["tokens_per_s"] * m["flops_per_token"] / 1e12
            row["of_matmul"] = row["model_tflops"] * 1e12 / matmul
            row["full_rung_min"] = rung.tokens / m["tokens_per_s"] / 60
        rows.append(row)
        print(f"{stamp(started)} {name}: {r.status} {r.error}", flush=True)

    lines = [f"# {args.ladder}/{rung.name} on {gpu}", "",
             f"corpus {args.corpus}, tokenizer {args.tokenizer or rung.tokenizer}, {scale:.2%} of the rung's "
             f"{rung.tokens:,} tokens; bf16 matmul {matmul / 1e12:.0f} TFLOP/s, nominal peak "
             f"{(nominal or 0) / 1e12:.0f} TFLOP/s", "",
             "| design | params | d x L | tokens | tok/s | model TFLOP/s | MFU (nominal) | of matmul | bpb | "
             "wall s | full rung min |", "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['design']} | {r['status']}: {r['error'][:80]} |||||||||")
            continue
        lines.append(f"| {r['design']} | {r['params']:,} | {r['d_model']} x {r['n_block']} | {r['tokens']:,} | "
                     f"{r['tokens_per_s']:,.0f} | {r['model_tflops']:.1f} | {r['mfu'] or 0:.1%} | "
                     f"{r['of_matmul']:.1%} | {r['bpb']:.4f} | {r['wall_s']:.0f} | {r['full_rung_min']:.1f} |")
    table = "\n".join(lines) + "\n"
    print()
    print(table)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_rung.md").write_text(table)
        (args.out / "gpu_rung.json").write_text(json.dumps({
            "gpu": gpu, "matmul_bf16": matmul, "nominal_peak": nominal, "rung": rung.to_dict(), "scale": scale,
            "corpus": args.corpus, "tokenizer": args.tokenizer or rung.tokenizer, "probes": probes, "rows": rows,
            "total_s": time.monotonic() - started}, indent=1))
    sys.exit(0 if all(r["status"] == "ok" for r in rows) else 1)


if __name__ == "__main__":
    main()
