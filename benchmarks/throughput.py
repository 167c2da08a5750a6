"""Training throughput of the GPT-2 seed built from its unit tree, against a plain GPT.

The seed goes the way every design goes: load_seed("gpt2") -> UnitTree.compose() ->
load_design_module -> build_model, sized with fit_config. Beside it, in the same run,
a plain hand-written GPT of exactly the same architecture (pre-LayerNorm blocks of
causal rotary attention and a 4x GELU MLP with biases, final RMSNorm, tied head) at
the same (d_model, n_block). The plain model's weights are copied into the seed model
and their logits compared before any timing, so both compute the same function and
the step times differ only by how the code is organised: the seed's GAU calls (shape
checks, Z dicts, one more module call per unit) and its MHA recomputing the rotary
tables per call where the plain model keeps them in a buffer.

A step is forward + backward + AdamW, fp32 on CPU. Measurements alternate between the
two models (A, B, A, B, ...) after warmup, so machine noise falls on both; the median
of the repeats is reported. Target: the seed's step time within 1.10x the plain one.

Second part, every seed of the library against GPT-2: each seed is sized with
fit_config to the same targets, and all of them are timed round-robin in one run.
Target: every seed reaches at least a third of GPT-2's training tokens/s.

    python benchmarks/throughput.py                  # both parts at 1M and 3M parameters
    python benchmarks/throughput.py --part plain     # the unit-tree overhead only (~70 s)
    python benchmarks/throughput.py --part seeds --seeds gla mamba2
    python benchmarks/throughput.py --quick          # smoke run, a few steps
    python benchmarks/throughput.py --json results.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from designs.model import load_design_module  # noqa: E402
from designs.seeds import load_seed, seed_names  # noqa: E402
from designs.sizing import SizeConfig, fit_config  # noqa: E402

TARGET_RATIO = 1.10  # the seed's step time may be at most this multiple of the plain one
SEED_FLOOR = 1 / 3  # every seed's training tokens/s must be at least this fraction of GPT-2's
LOGIT_TOLERANCE = 1e-5  # largest absolute logit difference allowed between the two models


# ---------------------------------------------------------------- the plain GPT


@dataclass
class PlainConfig:
    vocab_size: int = 256  # byte-level tokens
    d_model: int = 128  # width of the residual stream
    n_block: int = 4  # number of transformer blocks
    n_heads: int = 4  # attention heads (as the GPT-2 seed's MHA)
    mlp_ratio: int = 4  # MLP hidden width over d_model
    rope_base: float = 10000.0  # rotary embedding base
    norm_eps: float = 1e-5  # of every LayerNorm and of the final RMSNorm
    max_seq: int = 256  # rotary tables are precomputed up to this length


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding of x: (B, H, T, hd); channel i pairs with i + hd/2. cos, sin: (T, hd/2)."""
    a, b = x.chunk(2, dim=-1)
    return torch.cat((a * cos - b * sin, b * cos + a * sin), dim=-1)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: PlainConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.c_attn = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.c_proj = nn.Linear(cfg.d_model, cfg.d_model)
        head_dim = cfg.d_model // cfg.n_heads
        # Computed once here, in fp32, as the seed does per call: the angles are bit-identical.
        inv_freq = 1.0 / cfg.rope_base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        angles = torch.outer(torch.arange(cfg.max_seq, dtype=torch.float32), inv_freq)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = (t.view(B, T, self.n_heads, -1).transpose(1, 2) for t in self.c_attn(x).split(D, dim=-1))
        cos, sin = self.cos[:T], self.sin[:T]
        y = F.scaled_dot_product_attention(rotate(q, cos, sin), rotate(k, cos, sin), v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, D))


class MLP(nn.Module):
    def __init__(self, cfg: PlainConfig):
        super().__init__()
        self.c_fc = nn.Linear(cfg.d_model, cfg.mlp_ratio * cfg.d_model)
        self.c_proj = nn.Linear(cfg.mlp_ratio * cfg.d_model, cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, cfg: PlainConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class PlainGPT(nn.Module):
    def __init__(self, cfg: PlainConfig):
        super().__init__()
        self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.h = nn.ModuleList(Block(cfg) for _ in range(cfg.n_block))
        self.ln_f = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight
        for name, module in self.named_modules():  # GPT-2 init, residual projections scaled down
            if isinstance(module, (nn.Linear, nn.Embedding)):
                std = 0.02 / math.sqrt(2 * cfg.n_block) if name.endswith("c_proj") else 0.02
                nn.init.normal_(module.weight, std=std)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """idx: (B, T) -> logits: (B, T, vocab_size)."""
        x = self.wte(idx)
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))

    def loss(self, tokens: torch.Tensor) -> torch.Tensor:
        """Next-token cross-entropy of tokens: (B, T + 1), as DesignLM.loss."""
        logits = self(tokens[:, :-1])
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))

    def num_params(self, non_embedding: bool = True) -> int:
        total = sum(p.numel() for p in self.parameters())
        return total - self.wte.weight.numel() if non_embedding else total


# Plain block parameter -> GPT-2 seed block parameter (GPT2Block's units wrap torch modules).
BLOCK_NAMES = {
    "ln_1.weight": "norm1.norm.weight",
    "ln_1.bias": "norm1.norm.bias",
    "attn.c_attn.weight": "attn.qkv_proj.weight",
    "attn.c_attn.bias": "attn.qkv_proj.bias",
    "attn.c_proj.weight": "attn.out_proj.weight",
    "attn.c_proj.bias": "attn.out_proj.bias",
    "ln_2.weight": "norm2.norm.weight",
    "ln_2.bias": "norm2.norm.bias",
    "mlp.c_fc.weight": "mlp.fc1.weight",
    "mlp.c_fc.bias": "mlp.fc1.bias",
    "mlp.c_proj.weight": "mlp.fc2.weight",
    "mlp.c_proj.bias": "mlp.fc2.bias",
}
TOP_NAMES = {"wte.weight": "embedding.weight", "lm_head.weight": "lm_head.weight", "ln_f.weight": "norm_out.weight"}


def seed_state_dict(plain_state: dict) -> dict:
    """The plain model's state dict under the GPT-2 seed model's parameter names."""
    mapped = {}
    for name, tensor in plain_state.items():
        if name in TOP_NAMES:
            mapped[TOP_NAMES[name]] = tensor
        else:
            _, index, rest = name.split(".", 2)  # "h.<i>.<rest>"
            mapped[f"blocks.{index}.{BLOCK_NAMES[rest]}"] = tensor
    return mapped


# ---------------------------------------------------------------- building and checking


def build_pair(module, target: int, args) -> tuple[nn.Module, nn.Module, SizeConfig]:
    """(seed model, plain model, SizeConfig) at the fitted size, with equal parameter counts."""
    size = fit_config(module, target, vocab_size=args.vocab)
    kw = module.KWARG_ALL
    cfg = PlainConfig(args.vocab, size.d_model, size.n_block, kw["n_heads"], int(kw["mlp_ratio"]),
                      kw["rope_base"], kw["eps"], args.context)
    seed = module.build_model(d_model=size.d_model, n_block=size.n_block, vocab_size=args.vocab)
    plain = PlainGPT(cfg)
    counts = (seed.num_params(True), plain.num_params(True), seed.num_params(False), plain.num_params(False))
    assert counts[0] == counts[1] and counts[2] == counts[3], f"parameter counts differ: {counts}"
    return seed, plain, size


@torch.no_grad()
def check_same_function(seed: nn.Module, plain: nn.Module, args) -> float:
    """Perturb the plain weights (so norms and biases matter), copy them into the seed, compare logits."""
    for p in plain.parameters():
        p.add_(torch.randn_like(p) * 0.02)
    seed.load_state_dict(seed_state_dict(plain.state_dict()), strict=True)
    tokens = torch.randint(0, args.vocab, (2, args.context))
    diff = (seed(tokens) - plain(tokens)).abs().max().item()
    assert diff <= LOGIT_TOLERANCE, f"seed and plain logits differ by {diff:.2e} > {LOGIT_TOLERANCE:.0e}"
    return diff


# ---------------------------------------------------------------- timing


class Trainer:
    """One model, its AdamW, and a fixed set of batches; `run(n)` times n training steps."""

    def __init__(self, model: nn.Module, batches: list[torch.Tensor]):
        self.model, self.batches, self.calls = model, batches, 0
        self.opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)

    def step(self) -> None:
        tokens = self.batches[self.calls % len(self.batches)]
        self.calls += 1
        self.opt.zero_grad(set_to_none=True)
        self.model.loss(tokens).backward()
        self.opt.step()

    def run(self, steps: int) -> float:
        """Seconds per step, averaged over `steps` consecutive steps."""
        start = time.perf_counter()
        for _ in range(steps):
            self.step()
        return (time.perf_counter() - start) / steps


def time_pair(trainers: dict[str, Trainer], args) -> dict[str, list[float]]:
    """Per-step seconds of each trainer, measured in alternation after warmup."""
    for trainer in trainers.values():
        for _ in range(args.warmup):
            trainer.step()
    samples: dict[str, list[float]] = {name: [] for name in trainers}
    for _ in range(args.repeats):
        for name, trainer in trainers.items():
            samples[name].append(trainer.run(args.steps))
    return samples


def summarize(times: list[float], tokens: int) -> dict:
    """Median, min and spread (interquartile range over median) of per-step seconds."""
    q1, _, q3 = statistics.quantiles(times, n=4) if len(times) > 1 else (times[0],) * 3
    median = statistics.median(times)
    return {"median_step_ms": median * 1e3, "min_step_ms": min(times) * 1e3, "tokens_per_s": tokens / median,
            "spread": (q3 - q1) / median, "step_ms": [t * 1e3 for t in times]}


def bench_size(module, target: int, args) -> dict:
    seed, plain, size = build_pair(module, target, args)
    diff = check_same_function(seed, plain, args)
    gen = torch.Generator().manual_seed(args.seed)
    batches = [torch.randint(0, args.vocab, (args.batch, args.context + 1), generator=gen) for _ in range(4)]
    samples = time_pair({"seed": Trainer(seed, batches), "plain": Trainer(plain, batches)}, args)
    models = {name: summarize(times, args.batch * args.context) for name, times in samples.items()}
    ratio = models["seed"]["median_step_ms"] / models["plain"]["median_step_ms"]
    # Each seed measurement over the plain one right after it: both saw about the same load.
    paired = statistics.median(s / p for s, p in zip(samples["seed"], samples["plain"]))
    return {"target": target, "d_model": size.d_model, "n_block": size.n_block,
            "non_embedding_params": size.non_embedding_params, "total_params": size.total_params,
            "max_logit_diff": diff, "models": models, "ratio": ratio, "paired_ratio": paired,
            "min_ratio": models["seed"]["min_step_ms"] / models["plain"]["min_step_ms"],
            "passed": ratio <= TARGET_RATIO}


# ---------------------------------------------------------------- every seed against GPT-2


def bench_seeds(target: int, names: list[str], args) -> dict:
    """Every seed sized to one target, trained round-robin; tokens/s relative to GPT-2's."""
    gen = torch.Generator().manual_seed(args.seed)
    batches = [torch.randint(0, args.vocab, (args.batch, args.context + 1), generator=gen) for _ in range(4)]
    trainers, sizes = {}, {}
    for name in names:
        module = load_design_module(load_seed(name))
        sizes[name] = fit_config(module, target, vocab_size=args.vocab, name=name)
        torch.manual_seed(args.seed)
        model = module.build_model(d_model=sizes[name].d_model, n_block=sizes[name].n_block, vocab_size=args.vocab)
        trainers[name] = Trainer(model, batches)
    samples = time_pair(trainers, args)
    models = {name: summarize(times, args.batch * args.context) for name, times in samples.items()}
    base = models["gpt2"]["tokens_per_s"]
    rows = []
    for name in names:
        relative = models[name]["tokens_per_s"] / base
        rows.append({"seed": name, **sizes[name].to_dict(), **models[name], "relative_to_gpt2": relative,
                     "passed": relative >= SEED_FLOOR})
    return {"target": target, "rows": rows}


def print_seed_table(results: list[dict]) -> None:
    head = f"{'seed':<16}{'target':>11}{'d_model':>8}{'n_block':>8}{'non-emb params':>16}{'median ms':>11}{'tokens/s':>10}"
    print(head + f"{'vs gpt2':>9}  at least {SEED_FLOOR:.2f}x")
    print("-" * (len(head) + 23))
    for result in results:
        for r in result["rows"]:
            print(f"{r['seed']:<16}{result['target']:>11,}{r['d_model']:>8}{r['n_block']:>8}"
                  f"{r['non_embedding_params']:>16,}{r['median_step_ms']:>11.1f}{r['tokens_per_s']:>10,.0f}"
                  f"{r['relative_to_gpt2']:>8.2f}x  {'PASS' if r['passed'] else 'FAIL'}")


# ---------------------------------------------------------------- report

NOISY_SPREAD = 0.10  # interquartile range over median above which a run is flagged as noisy


def print_table(results: list[dict]) -> None:
    head = (f"{'model':<12}{'d_model':>8}{'n_block':>8}{'non-emb params':>16}{'median ms':>11}{'min ms':>9}"
            f"{'tokens/s':>10}{'seed/plain':>12}{'paired':>8}")
    print(head + f"  within {TARGET_RATIO:.2f}x")
    print("-" * (len(head) + 14))
    for r in results:
        for name in ("seed", "plain"):
            m = r["models"][name]
            line = (f"{'gpt2 ' + name:<12}{r['d_model']:>8}{r['n_block']:>8}{r['non_embedding_params']:>16,}"
                    f"{m['median_step_ms']:>11.1f}{m['min_step_ms']:>9.1f}{m['tokens_per_s']:>10,.0f}")
            if name == "plain":
                line += f"{r['ratio']:>11.3f}x{r['paired_ratio']:>7.3f}x  {'PASS' if r['passed'] else 'FAIL'}"
            print(line)
    noisy = [f"{r['target']:,} {n}" for r in results for n, m in r["models"].items() if m["spread"] > NOISY_SPREAD]
    if noisy:
        print(f"\nwarning: step times vary by more than {NOISY_SPREAD:.0%} (interquartile range) for "
              f"{', '.join(noisy)}: the machine is busy and the verdict is unreliable; rerun when it is idle")


def machine() -> str:
    """CPU model and core count, for the record."""
    cpuinfo = Path("/proc/cpuinfo")
    names = [ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines()
             if ln.startswith("model name")] if cpuinfo.exists() else []
    return f"{names[0] if names else platform.machine()}, {os.cpu_count()} cores"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 3_000_000],
                   help="non-embedding parameter targets (fit_config sizes the models)")
    p.add_argument("--vocab", type=int, default=256, help="vocabulary size (bytes)")
    p.add_argument("--context", type=int, default=256, help="tokens per sequence")
    p.add_argument("--batch", type=int, default=16, help="sequences per step")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per model before timing")
    p.add_argument("--repeats", type=int, default=11, help="timed measurements per model (median reported)")
    p.add_argument("--steps", type=int, default=1, help="training steps per measurement (at least 1)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 warmup step, 3 repeats of 1 step")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--part", choices=("plain", "seeds", "all"), default="all",
                   help="plain: GPT-2 seed vs plain GPT; seeds: every seed vs GPT-2; all: both")
    p.add_argument("--seeds", nargs="+", default=None, help="seeds to compare with GPT-2 (default: all)")
    p.add_argument("--seed-repeats", type=int, default=5, help="timed measurements per seed in the seeds part")
    args = p.parse_args(argv)
    if args.quick:
        args.warmup, args.repeats, args.steps, args.seed_repeats = 1, 3, 1, 2
    if args.repeats < 1 or args.steps < 1:
        p.error("--repeats and --steps must be at least 1")
    return args


def run_plain(args) -> list[dict]:
    tree = load_seed("gpt2")
    module = load_design_module(tree, tree.compose())
    print(f"GPT-2 seed (unit tree) vs plain GPT: {args.batch} x {args.context} tokens per step, "
          f"forward + backward + AdamW, fp32, {args.threads} threads, {machine()}; "
          f"median of {args.repeats} x {args.steps} steps after {args.warmup} warmup", flush=True)
    results = []
    for target in args.sizes:
        r = bench_size(module, target, args)
        results.append(r)
        print(f"  {target:,}: d_model={r['d_model']} n_block={r['n_block']}, same logits "
              f"(max diff {r['max_logit_diff']:.1e}), seed/plain {r['ratio']:.3f}", flush=True)
    print()
    print_table(results)
    return results


def run_seeds(args) -> list[dict]:
    names = ["gpt2"] + [n for n in (args.seeds or seed_names()) if n != "gpt2"]
    unknown = sorted(set(names) - set(seed_names()))
    if unknown:
        raise SystemExit(f"unknown seeds: {', '.join(unknown)}; seeds: {', '.join(seed_names())}")
    timing = argparse.Namespace(**{**vars(args), "repeats": args.seed_repeats})
    print(f"\nEvery seed vs GPT-2 at matched non-embedding parameters: {args.batch} x {args.context} tokens "
          f"per step, fp32, {args.threads} threads; median of {timing.repeats} round-robin steps", flush=True)
    results = []
    for target in args.sizes:
        results.append(bench_seeds(target, names, timing))
        print(f"  {target:,}: " + ", ".join(f"{r['seed']} {r['relative_to_gpt2']:.2f}x" for r in results[-1]["rows"]),
              flush=True)
    print()
    print_seed_table(results)
    return results


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    results = {}
    if args.part in ("plain", "all"):
        results["plain"] = run_plain(args)
    if args.part in ("seeds", "all"):
        results["seeds"] = run_seeds(args)
    wall = time.perf_counter() - start
    print(f"\n{wall:.0f} s")
    if args.json:
        meta = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": machine(),
                "torch": torch.__version__, "python": platform.python_version(), "wall_s": wall,
                "target_ratio": TARGET_RATIO, "seed_floor": SEED_FLOOR}
        config = {k: v for k, v in vars(args).items() if k != "json"}
        args.json.write_text(json.dumps({"meta": meta, "config": config, "results": results}, indent=1))
    return results


if __name__ == "__main__":
    main()
