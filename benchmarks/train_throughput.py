"""The trainer's overhead and the machine's efficiency, side by side in one run.

Three measurements on the GPT-2 seed sized to about 3M non-embedding parameters
(fit_config, byte vocabulary, context 256, batch 16, fp32 on CPU):

  (a) trainer  verifier.train.train on the seed model (in process: trusted seed code),
               checkpoints off, one logging window: its own tokens/s (the step loop,
               setup and writing left out) and the whole call's wall time.
  (b) plain    a plain PyTorch loop on an identical model (same seed, same init): AdamW
               (fused, as the trainer's) with the same parameter groups, clipping at 1.0,
               the same warmup + cosine LambdaLR, the same batches
               (verifier.train.step_batch), loss.item() each step; no accelerate, no
               logging, no checkpoints.
  (c) matmul   a 2048 x 2048 @ 2048 x 2048 fp32 matmul rate: the practical peak.

After a warmup round of each, rounds run a, b, c or b, a, c (alternately) so that
machine load falls on all three; the median of the rounds is reported, plus the
paired ratio (the median over rounds of the trainer's step time over the plain step
time of the same round), which holds up better on a busy machine.

Targets: the trainer's step time within 1.10x the plain loop's; the model FLOP/s of
(a) (FLOPs per token from designs.model.measure_flops, forward + backward, times
tokens/s) at least 50% of (c).

    python benchmarks/train_throughput.py                  # 3-8 min on 2 shared cores
    python benchmarks/train_throughput.py --steps 4 --rounds 2 --target 1000000   # quick
    python benchmarks/train_throughput.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from designs.loader import load_source  # noqa: E402
from designs.model import measure_flops  # noqa: E402
from designs.seeds import load_seed  # noqa: E402
from designs.sizing import fit_config  # noqa: E402
from verifier.data.corpus import load_corpus, pretokenize  # noqa: E402
from verifier.data.tokenizers import load_tokenizer  # noqa: E402
from verifier.train import TrainConfig, lr_factor, param_groups, step_batch, train  # noqa: E402

TARGET_RATIO = 1.10
TARGET_FRACTION = 0.50


def matmul_rate(n: int = 2048, repeats: int = 3) -> float:
    """Best-of-repeats FLOP/s of one n x n fp32 matmul."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def plain_loop(model, cfg: TrainConfig, data) -> float:
    """cfg.steps optimizer steps the plain way; returns tokens/s of the loop."""
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas, fused=True)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, cfg.steps, cfg.warmup, cfg.min_lr_ratio))
    model.train()
    t = time.perf_counter()
    for step in range(cfg.steps):
        tokens = step_batch(data, cfg.batch_size, cfg.seq_len, cfg.seed, step)
        loss = model.loss(tokens)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if not torch.isfinite(torch.tensor(loss.item())):
            raise RuntimeError("plain loop diverged")
    return cfg.steps * cfg.tokens_per_step / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", type=int, default=3_000_000, help="non-embedding parameters")
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=6, help="optimizer steps per measurement")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    source = load_seed("gpt2").compose(include_tests=False)
    module = load_source(source, "gpt2")
    size = fit_config(module, args.target, vocab_size=256, name="gpt2")
    cfg = TrainConfig(d_model=size.d_model, n_block=size.n_block, vocab_size=256, seq_len=args.seq_len,
                      batch_size=args.batch, max_tokens=args.steps * args.batch * args.seq_len, lr=1e-3,
                      log_every=args.steps, checkpoint_every=0)
    work = Path(tempfile.mkdtemp(prefix="genesys-train-bench-"))
    data = pretokenize(load_corpus("stdlib"), "train", load_tokenizer("byte"), cache_dir=work / "cache",
                       max_tokens=2_000_000)

    def build():
        torch.manual_seed(0)
        return module.build_model(d_model=size.d_model, n_block=size.n_block, vocab_size=256)

    flops = measure_flops(build(), seq_len=args.seq_len, vocab_size=256).train_per_token
    print(f"GPT-2 seed: d_model {size.d_model}, n_block {size.n_block}, {size.non_embedding_params:,} "
          f"non-embedding params; {flops / 1e6:.1f} MFLOP/token (train); batch {args.batch} x {args.seq_len}, "
          f"{args.steps} steps a measurement, {args.rounds} rounds, {args.threads} threads, "
          f"load {os.getloadavg()[0]:.1f}")

    rows = {"trainer": [], "trainer_call_s": [], "plain": [], "matmul": []}
    for r in range(args.rounds + 1):  # round 0 warms up
        if r % 2:  # alternate which of the two goes first
            plain = plain_loop(build(), cfg, data)
        t = time.perf_counter()
        result = train(build(), cfg, data, work / f"run{r}", name="gpt2")
        call_s = time.perf_counter() - t
        assert result.status == "completed", result.reason
        if not r % 2:
            plain = plain_loop(build(), cfg, data)
        peak = matmul_rate()
        if r == 0:
            continue
        rows["trainer"].append(result.tokens_per_s)
        rows["trainer_call_s"].append(call_s)
        rows["plain"].append(plain)
        rows["matmul"].append(peak)
        print(f"  round {r}: trainer {result.tokens_per_s:8.0f} tok/s (call {call_s:.1f} s)   "
              f"plain {plain:8.0f} tok/s   matmul {peak / 1e9:6.1f} GFLOP/s")

    med = {k: statistics.median(v) for k, v in rows.items()}
    ratio = med["plain"] / med["trainer"]  # time ratio: trainer step time over plain step time
    paired = statistics.median(p / a for a, p in zip(rows["trainer"], rows["plain"]))
    model_flops = flops * med["trainer"]
    fraction = model_flops / med["matmul"]
    setup_s = med["trainer_call_s"] - cfg.steps * cfg.tokens_per_step / med["trainer"]
    print()
    print(f"(a) trainer   {med['trainer']:9.0f} tokens/s   (whole call {med['trainer_call_s']:.1f} s, "
          f"{setup_s:.1f} s of it outside the step loop: FLOP count, prepare, final weights)")
    print(f"(b) plain     {med['plain']:9.0f} tokens/s")
    print(f"    time ratio a/b {ratio:.3f}x (paired {paired:.3f}x), target <= {TARGET_RATIO:.2f}x: "
          f"{'ok' if min(ratio, paired) <= TARGET_RATIO else 'MISSED'}")
    print(f"(c) matmul    {med['matmul'] / 1e9:9.1f} GFLOP/s (2048^3 fp32, best of 3)")
    print(f"    model FLOP/s of (a) {model_flops / 1e9:.1f} GFLOP/s = {fraction:.1%} of (c), target >= "
          f"{TARGET_FRACTION:.0%}: {'ok' if fraction >= TARGET_FRACTION else 'MISSED'}")
    if args.json:
        args.json.write_text(json.dumps({
            "machine": platform.processor() or platform.machine(), "threads": args.threads,
            "size": size.to_dict(), "flops_per_token": flops, "rounds": rows, "median": med,
            "time_ratio": ratio, "paired_ratio": paired, "model_flops": model_flops, "fraction_of_matmul": fraction,
        }, indent=1))


if __name__ == "__main__":
    main()
