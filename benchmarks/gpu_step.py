"""Where a GPU training step goes: one seed at a rung's size, eager against torch.compile.

    python benchmarks/gpu_step.py                        # GPT-2 at the gpu ladder's 14M rung
    python benchmarks/gpu_step.py --design mamba2 --steps 10

The seed (trusted code, built in this process) is sized with fit_config to the rung's
non-embedding parameters at a 32,768-token vocabulary, then trained for a few steps on
random tokens with the trainer's own pieces (AdamW with its parameter groups, bf16
autocast, clipping) at the rung's batch and context: eager, then `torch.compile`d. It
prints tokens/s and MFU of each (model FLOPs from designs.model.measure_flops over the
device's nominal bf16 peak), and the eager step's top CUDA kernels from torch.profiler
grouped into matmul, attention, loss and the rest. Numbers for deciding whether the
trainer should compile on GPUs; nothing here is used by the product.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from designs.loader import load_source  # noqa: E402
from designs.model import measure_flops  # noqa: E402
from designs.seeds import load_seed  # noqa: E402
from designs.sizing import fit_config  # noqa: E402
from verifier.ladder import get_rung  # noqa: E402
from verifier.train import param_groups, peak_flops  # noqa: E402

# Kernel name fragments: cuBLAS(Lt) GEMMs on Hopper are "nvjet_*" or "sm90_xmma_gemm_*".
GROUPS = (("matmul", ("nvjet", "gemm", "xmma", "cutlass", "cublas")), ("attention", ("flash", "fmha", "attention")),
          ("loss", ("log_softmax", "nll_loss", "cross_entropy")), ("optimizer", ("adam", "multi_tensor", "foreach")))


def build(module, size, vocab: int):
    torch.manual_seed(0)
    return module.build_model(d_model=size.d_model, n_block=size.n_block, vocab_size=vocab).cuda()


def steps_per_s(model, batch: int, context: int, vocab: int, steps: int, warmup: int, compile_: bool = False) -> float:
    loss_of = torch.compile(model.loss) if compile_ else model.loss
    opt = torch.optim.AdamW(param_groups(model, 0.1), lr=1e-3, fused=True)
    data = torch.randint(0, vocab, (batch, context + 1), device="cuda")
    for i in range(warmup + steps):
        if i == warmup:
            torch.cuda.synchronize()
            t = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = loss_of(data)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()
    torch.cuda.synchronize()
    return steps / (time.perf_counter() - t)


def kernel_shares(model, batch: int, context: int, vocab: int) -> tuple[dict[str, float], list[tuple[str, float]]]:
    from torch.profiler import ProfilerActivity, profile

    opt = torch.optim.AdamW(param_groups(model, 0.1), lr=1e-3, fused=True)
    data = torch.randint(0, vocab, (batch, context + 1), device="cuda")
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(3):
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = model.loss(data)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
    totals: dict[str, float] = {}
    kernels: dict[str, float] = {}
    for event in prof.key_averages():
        cuda_us = getattr(event, "device_time_total", None) or getattr(event, "cuda_time_total", 0)
        if not cuda_us or event.key.startswith("aten::") or event.key.startswith("cuda"):
            continue
        name = event.key.lower()
        group = next((g for g, keys in GROUPS if any(k in name for k in keys)), "element-wise and other")
        totals[group] = totals.get(group, 0.0) + cuda_us
        kernels[event.key[:90]] = kernels.get(event.key[:90], 0.0) + cuda_us
    whole = sum(totals.values()) or 1.0
    top = sorted(kernels.items(), key=lambda kv: -kv[1])[:8]
    return ({g: v / whole for g, v in sorted(totals.items(), key=lambda kv: -kv[1])},
            [(k, v / whole) for k, v in top])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--design", default="gpt2")
    ap.add_argument("--rung", default="14M")
    ap.add_argument("--vocab", type=int, default=32768)
    ap.add_argument("--micro-batch", type=int, default=None, help="default: the rung's batch")
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("gpu_step.py needs a CUDA GPU")
    rung = get_rung("gpu", args.rung)
    batch = args.micro_batch or rung.batch
    module = load_source(load_seed(args.design).compose(include_tests=False), args.design)
    size = fit_config(module, rung.target_params, vocab_size=args.vocab, name=args.design)
    flops = measure_flops(build(module, size, args.vocab).cpu(), seq_len=rung.context,
                          vocab_size=args.vocab).train_per_token
    peak = peak_flops(torch.device("cuda"))
    tokens = batch * rung.context
    print(f"{args.design} at {rung.name}: d_model {size.d_model} x {size.n_block} blocks, "
          f"{size.non_embedding_params:,} non-embedding params, {flops / 1e6:.0f} MFLOP/token, "
          f"batch {batch} x {rung.context}, bf16 autocast, {torch.cuda.get_device_name(0)}", flush=True)
    eager = steps_per_s(build(module, size, args.vocab), batch, rung.context, args.vocab, args.steps, 3)
    print(f"eager:    {eager * tokens:12,.0f} tokens/s   MFU {eager * tokens * flops / peak:6.1%}", flush=True)
    shares, top = kernel_shares(build(module, size, args.vocab), batch, rung.context, args.vocab)
    print("eager CUDA time: " + ", ".join(f"{g} {s:.0%}" for g, s in shares.items()), flush=True)
    for name, share in top:
        print(f"    {share:5.1%}  {name}")
    t = time.perf_counter()
    fast = steps_per_s(build(module, size, args.vocab), batch, rung.context, args.vocab, args.steps, 3,
                       compile_=True)
    print(f"compiled: {fast * tokens:12,.0f} tokens/s   MFU {fast * tokens * flops / peak:6.1%}   "
          f"({fast / eager:.2f}x eager; compile and warmup {time.perf_counter() - t - args.steps / fast:.0f} s)")


if __name__ == "__main__":
    main()
