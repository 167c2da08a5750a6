"""The trainer: one design, one config, one output folder. Runs inside the sandbox.

    result = train(source, TrainConfig(d_model=128, n_block=4, max_tokens=2_000_000),
                   train_data, Path("runs/x"), name="my_design", valid_data=valid)
    result.status        # completed | diverged | stopped
    result.final_loss, result.tokens_per_s, result.mfu, result.log

`model_or_source` is a design's composed source (executed here with
designs.loader.load_source, so call this only in the sandbox: the "train" entry of
verifier.entries) or an already built module with `.loss(tokens)` (trusted seeds in
tests and benchmarks). The data is a `TokenShards` (verifier.data.corpus), a
`TokenArray` (below) or anything with `.batch(B, seq_len, generator)`.

What a run does:
- `accelerate` drives it: CPU when there is no CUDA; bf16 autocast on CUDA
  (precision "auto"), fp32 on CPU (bf16 there is ~25x slower); several GPUs under
  `accelerate launch` (each process takes its share of the global batch's rows).
- AdamW (fused; no weight decay on biases, norms and 1-D parameters), linear warmup then
  cosine to `min_lr_ratio * lr`, gradient clipping, gradient accumulation
  (`batch_size // micro_batch_size` micro-batches per optimizer step).
- Data order is fixed by (seed, step): the global batch of step s is drawn with a
  torch.Generator seeded from a hash of (seed, s), then cut into micro-batches.
  So a resumed run, or one whose micro-batch changed, sees exactly the same tokens.
- OOM back-off: an out-of-memory error in a step halves the micro-batch (the global
  batch stays: more accumulation), restores the RNG and redoes the step; the log
  gets an `{"event": "oom_backoff"}` entry. Below micro-batch 1: status "stopped".
  Under several processes it is per process: one that runs out of memory while the
  others reach the gradient all-reduce stalls them (size micro_batch_size there).
- torch.compile of the loss (`compile`, "auto": on one CUDA device only): 1.6-2.2x the
  eager step on an H100 at 14M parameters. The first step, which compiles, is logged as
  `{"event": "compiled", "seconds": ...}` and left out of tokens/s and MFU. A compiled
  step that raises (a design dynamo cannot trace) is redone eager for the rest of the
  run, logged as "compile_failed".
- Divergence stop: a NaN/inf loss or gradient norm, or (after warmup) a loss above
  `divergence_loss` (default 1.5 ln V, V the vocabulary: a uniform guess scores ln V)
  ends the run with status "diverged" and the step; nothing is raised.
- Checkpoints every `checkpoint_every` steps and at the end, under out_dir/checkpoints/
  step_NNNNNNNN (written into a `.tmp-*` folder, then renamed; the last 2 kept):
  model, optimizer, scheduler, step, RNG state, the log, the wall time so far. A run
  started on an out_dir holding a complete checkpoint with the same fingerprint (config,
  model, data) resumes from it, bit-exact on CPU: the finished run equals an
  uninterrupted one.
  Checkpoints of another fingerprint are removed (the folder is one run's).
- At the end: out_dir/final/model.safetensors (weights only, the tied embedding
  stored once; `safetensors.torch.load_model` reads it), out_dir/final/config.json
  (the TrainConfig, the name, the model's config) and out_dir/result.json. The log
  goes to out_dir/train_log.jsonl, one JSON object a line, as it is written (a
  watcher can follow it); entries with an "event" key are events, not log steps.
  Their "elapsed_s" runs on across a resume: the killed call's time up to its last
  checkpoint counts (TrainResult.prior_s), what it did after that is not known.
- Throughput: tokens/s over each logging window (checkpoint and eval time left out),
  FLOPs per token counted once with designs.model.measure_flops (forward + backward,
  at seq_len), MFU against the device's peak: a table of bf16 dense peaks for known
  GPUs (None for others), or on CPU a large fp32 matmul measured once per process
  (set GENESYS_PEAK_FLOPS to skip that measurement).

Test hook: GENESYS_TRAIN_KILL_AT_STEP=N makes the process SIGKILL itself right after
step N (its log and checkpoint written), to test resuming.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import re
import secrets
import shutil
import signal
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from torch.nn import functional as F

from verifier.sandbox_child import is_out_of_memory

CHECKPOINTS = "checkpoints"
KEEP_CHECKPOINTS = 2
TRAIN_LOG = "train_log.jsonl"
KILL_ENV = "GENESYS_TRAIN_KILL_AT_STEP"
PEAK_ENV = "GENESYS_PEAK_FLOPS"
_FORMAT = 1
_STEP_DIR = re.compile(r"^step_(\d{8})$")

# bf16 dense tensor-core peaks (FLOP/s) by device name; the first pattern that matches wins.
GPU_PEAK_FLOPS = (
    (r"H100.*NVL", None),  # 835e12 with its own clocks: not in the brief's table, so unknown
    (r"H100.*PCIe", 756e12),
    (r"H100", 989e12),  # SXM (HBM3)
    (r"H200", 989e12),
    (r"A100", 312e12),
    (r"L40S", 362e12),
    (r"\bA10\b", 125e12),
    (r"RTX 4090", 165e12),
)
# Keys that to_dict()-based files carry beside the config (from_dict skips them).
_EXTRA_KEYS = {"name", "model", "fingerprint", "precision_resolved", "steps", "warmup"}


@dataclass
class TrainConfig:
    d_model: int
    n_block: int
    vocab_size: int = 256
    seq_len: int = 256  # context
    batch_size: int = 16  # global batch, in sequences, per optimizer step
    micro_batch_size: int | None = None  # per process; None: the whole (per-process) batch
    max_tokens: int = 1_000_000  # steps = max_tokens // (batch_size * seq_len)
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int | None = None  # None: 5% of the steps
    weight_decay: float = 0.1
    betas: tuple = (0.9, 0.95)
    grad_clip: float = 1.0  # 0 or None: no clipping (the norm is still logged)
    precision: str = "auto"  # "auto": bf16 on CUDA, fp32 on CPU; or "fp32" / "bf16"
    compile: str = "auto"  # torch.compile of the training loss: "auto" (on one CUDA device), "on" or "off"
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 100  # 0: no checkpoints at all
    eval_every: int = 0  # 0: evaluate only at the end (when valid_data is given)
    eval_batches: int = 8
    divergence_loss: float | None = None  # None: 1.5 * ln(vocab_size), checked after warmup

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.seq_len

    @property
    def steps(self) -> int:
        return self.max_tokens // self.tokens_per_step

    @property
    def warmup(self) -> int:
        if self.warmup_steps is not None:
            return int(self.warmup_steps)
        return max(1, round(0.05 * self.steps))

    @property
    def divergence_bound(self) -> float:
        return self.divergence_loss if self.divergence_loss is not None else 1.5 * math.log(self.vocab_size)

    def validate(self) -> None:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ValueError(f"TrainConfig: {message}")

        for key in ("d_model", "n_block", "vocab_size", "seq_len", "batch_size", "max_tokens", "log_every",
                    "eval_batches"):
            need(int(getattr(self, key)) >= 1, f"{key} must be at least 1, got {getattr(self, key)}")
        need(self.steps >= 1, f"max_tokens {self.max_tokens} is less than one step of batch_size x seq_len "
                              f"= {self.tokens_per_step} tokens")
        if self.micro_batch_size is not None:
            need(self.micro_batch_size >= 1, f"micro_batch_size must be at least 1, got {self.micro_batch_size}")
            need(self.batch_size % self.micro_batch_size == 0,
                 f"micro_batch_size {self.micro_batch_size} must divide batch_size {self.batch_size}")
        need(self.lr > 0 and 0 <= self.min_lr_ratio <= 1, "lr must be > 0 and min_lr_ratio in [0, 1]")
        need(self.warmup_steps is None or self.warmup_steps >= 0, "warmup_steps must be >= 0")
        need(self.precision in ("auto", "fp32", "bf16"), f"precision must be auto, fp32 or bf16, not {self.precision!r}")
        need(self.compile in ("auto", "on", "off"), f"compile must be auto, on or off, not {self.compile!r}")
        need(self.checkpoint_every >= 0 and self.eval_every >= 0, "checkpoint_every and eval_every must be >= 0")
        need(len(tuple(self.betas)) == 2, "betas must be two numbers")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known - _EXTRA_KEYS
        if unknown:
            raise ValueError(f"TrainConfig: unknown keys {', '.join(sorted(unknown))}")
        values = {k: v for k, v in d.items() if k in known}
        if "betas" in values:
            values["betas"] = tuple(values["betas"])
        return cls(**values)


@dataclass
class TrainResult:
    status: str  # "completed" | "diverged" | "stopped"
    steps: int  # optimizer steps done in all (resumed runs count the earlier ones)
    tokens: int  # training tokens seen in all
    final_loss: float  # training loss of the last logging window (the offending loss when diverged)
    wall_s: float  # this call's wall time, setup and writing included
    tokens_per_s: float  # this call's training tokens / its training time (checkpoints, evals left out)
    model_flops_per_token: float  # forward + backward, measured at seq_len; nan when it could not be
    mfu: float | None
    peak_flops: float | None
    log: list[dict]
    resumed_from: int | None
    micro_batch_size: int  # in force at the end (after any OOM back-off)
    reason: str = ""
    val_loss: float | None = None  # the last evaluation's mean loss per token (nats)
    total_steps: int = 0
    precision: str = ""  # "fp32" or "bf16", as run
    device: str = ""
    out_dir: str = ""
    prior_s: float = 0.0  # wall time of the earlier calls this run resumed from, up to that checkpoint

    def to_dict(self) -> dict:
        return asdict(self)


class TokenArray:
    """Token ids held in memory, with the `TokenShards` sampling interface (small runs, tests,
    and the sandbox "train" entry when the ids come in its arguments)."""

    def __init__(self, tokens, vocab_size: int | None = None):
        self.data = torch.as_tensor(tokens, dtype=torch.long).flatten()
        if vocab_size is not None:
            self.data.clamp_(0, vocab_size - 1)
        self.num_tokens = int(self.data.numel())

    def __len__(self) -> int:
        return self.num_tokens

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.data.numpy().tobytes()).hexdigest()[:16]

    def batch(self, batch_size: int, seq_len: int, generator=None) -> torch.Tensor:
        span = seq_len + 1
        if self.num_tokens < span:
            raise ValueError(f"{self.num_tokens} tokens are too few for windows of {span}")
        starts = torch.randint(0, self.num_tokens - span + 1, (batch_size,), generator=generator)
        return torch.stack([self.data[s:s + span] for s in starts.tolist()])

    def eval_batches(self, batch_size: int, seq_len: int, max_batches: int | None = None):
        starts = list(range(0, max(self.num_tokens - 1, 0) - seq_len + 1, seq_len))
        for done, i in enumerate(range(0, len(starts), batch_size)):
            if max_batches is not None and done >= max_batches:
                return
            yield torch.stack([self.data[s:s + seq_len + 1] for s in starts[i:i + batch_size]])


# ---------------------------------------------------------------- pieces


def lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Multiplier of the base lr for optimizer step `step` (0-based): linear warmup to 1 over
    `warmup` steps, then a cosine from 1 down to `min_ratio` at the last step."""
    if step < warmup:
        return (step + 1) / warmup
    span = max(1, total - 1 - warmup)
    progress = min(1.0, (step - warmup) / span)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: weight decay on matrices, none on biases, norms and other 1-D parameters."""
    decay, plain = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        lowered = name.lower()
        if p.ndim < 2 or lowered.endswith("bias") or "norm" in lowered:
            plain.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]


def adamw(groups: list[dict], config: TrainConfig) -> torch.optim.AdamW:
    """AdamW, fused (one kernel over all parameters, on CPU too: the for-loop version's optimizer
    step costs ~5-15% of a CPU training step at a few M parameters) where the parameters allow."""
    kw = {"lr": config.lr, "betas": tuple(config.betas)}
    try:
        return torch.optim.AdamW(groups, fused=True, **kw)
    except (RuntimeError, ValueError):  # a device or dtype the fused kernel does not take
        return torch.optim.AdamW(groups, **kw)


def step_seed(seed: int, step: int) -> int:
    """The data seed of one step: a hash of (seed, step), the same on every machine."""
    digest = hashlib.sha256(f"genesys-train\x00{seed}\x00{step}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)


def step_batch(data, batch_size: int, seq_len: int, seed: int, step: int) -> torch.Tensor:
    """The global batch of optimizer step `step` (0-based): (batch_size, seq_len + 1)."""
    generator = torch.Generator().manual_seed(step_seed(seed, step))
    return data.batch(batch_size, seq_len, generator)


_cpu_peak: dict[int, float] = {}


def cpu_peak_flops(n: int = 2048, repeats: int = 3) -> float:
    """FLOP/s of an n x n fp32 matmul on this CPU (best of `repeats`), measured once per process
    (about 4 x 17 GFLOP at n = 2048: a second or two on 2 cores)."""
    if n not in _cpu_peak:
        g = torch.Generator().manual_seed(0)  # its own generator: the global RNG is left alone
        a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
        a @ b  # warm up the BLAS
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t)
        _cpu_peak[n] = 2 * n**3 / best
    return _cpu_peak[n]


def gpu_peak_flops(name: str) -> float | None:
    for pattern, peak in GPU_PEAK_FLOPS:
        if re.search(pattern, name, re.IGNORECASE):
            return peak
    return None


def peak_flops(device: torch.device) -> float | None:
    """The device's peak FLOP/s for MFU: GENESYS_PEAK_FLOPS if set, the GPU table, or a CPU matmul."""
    if os.environ.get(PEAK_ENV):
        return float(os.environ[PEAK_ENV])
    if device.type == "cuda":
        return gpu_peak_flops(torch.cuda.get_device_name(device))
    if device.type == "cpu":
        return cpu_peak_flops()
    return None


def resolve_precision(precision: str, cuda: bool) -> str:
    if precision == "auto":
        return "bf16" if cuda else "fp32"
    return precision


def _accelerator(precision: str, cuda: bool):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    mixed = "bf16" if precision == "bf16" else "no"
    state = AcceleratorState._shared_state
    if state and (state.get("_mixed_precision") != mixed or state.get("_cpu") != (not cuda)):
        AcceleratorState._reset_state()  # the process-wide state holds the last run's settings
    return Accelerator(cpu=not cuda, mixed_precision=mixed, step_scheduler_with_optimizer=False)


def _identity(model_or_source, data) -> dict:
    if isinstance(model_or_source, str):
        model_id = "source:" + hashlib.sha256(model_or_source.encode()).hexdigest()[:16]
    else:
        shapes = [(n, list(t.shape)) for n, t in model_or_source.state_dict().items()]
        model_id = f"module:{type(model_or_source).__name__}:" + hashlib.sha256(
            json.dumps(shapes).encode()).hexdigest()[:16]
    fp = getattr(data, "fingerprint", None)
    if callable(fp):
        fp = None
    if fp is None and getattr(data, "path", None) is not None:
        fp = Path(data.path).name  # TokenShards: the folder's name carries the corpus and tokenizer hash
    data_id = f"{type(data).__name__}:{fp if fp is not None else len(data) if hasattr(data, '__len__') else '?'}"
    return {"model": model_id, "data": data_id}


def fingerprint(config: TrainConfig, identity: dict, precision: str) -> str:
    """What a checkpoint must match to be resumed: everything that shapes the trajectory."""
    d = config.to_dict()
    for key in ("log_every", "checkpoint_every", "eval_every", "eval_batches", "compile"):
        d.pop(key, None)
    d["precision"] = precision
    blob = json.dumps({"format": _FORMAT, "config": d, **identity}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1, default=str), encoding="utf-8")
    os.replace(tmp, path)


class Checkpoints:
    """out_dir/checkpoints/step_NNNNNNNN folders (state.pt + meta.json), written atomically."""

    def __init__(self, out_dir: Path):
        self.root = Path(out_dir) / CHECKPOINTS

    def complete(self) -> list[tuple[int, Path, dict]]:
        """(step, folder, meta) of the complete checkpoints, newest first. Leftover .tmp-* folders and
        folders without a readable meta.json and state.pt are not checkpoints."""
        found = []
        if not self.root.is_dir():
            return found
        for path in self.root.iterdir():
            m = _STEP_DIR.match(path.name)
            if not m or not (path / "state.pt").is_file():
                continue
            try:
                meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if meta.get("step") == int(m.group(1)):
                found.append((int(m.group(1)), path, meta))
        return sorted(found, key=lambda t: t[0], reverse=True)

    def clear_leftovers(self) -> None:
        if self.root.is_dir():
            for path in self.root.glob(".tmp-*"):
                shutil.rmtree(path, ignore_errors=True)

    def load_latest(self, fp: str, prune: bool = True) -> dict | None:
        """The newest complete checkpoint with this fingerprint, or None. With `prune` (the main
        process), leftover .tmp-* folders and checkpoints of other fingerprints are removed."""
        if prune:
            self.clear_leftovers()
        for step, path, meta in self.complete():
            if meta.get("fingerprint") != fp:
                if prune:
                    shutil.rmtree(path, ignore_errors=True)
                continue
            try:
                state = torch.load(path / "state.pt", map_location="cpu", weights_only=True)
            except Exception:  # noqa: BLE001 - a damaged file: fall back to the one before
                continue
            if state.get("step") == step and state.get("fingerprint") == fp:
                return state
        return None

    def save(self, state: dict) -> Path:
        step = int(state["step"])
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".tmp-step_{step:08d}-{os.getpid()}-{secrets.token_hex(3)}"
        tmp.mkdir()
        try:
            with open(tmp / "state.pt", "wb") as fh:
                torch.save(state, fh)
                fh.flush()
                os.fsync(fh.fileno())
            meta = {"format": _FORMAT, "step": step, "fingerprint": state["fingerprint"],
                    "name": state.get("name"), "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
            with open(tmp / "meta.json", "w", encoding="utf-8") as fh:
                json.dump(meta, fh)
                fh.flush()
                os.fsync(fh.fileno())
            final = self.root / f"step_{step:08d}"
            if final.exists():
                shutil.rmtree(final)
            os.rename(tmp, final)
            _fsync_dir(self.root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        for _, path, meta in self.complete()[KEEP_CHECKPOINTS:]:
            shutil.rmtree(path, ignore_errors=True)
        return final


def _rng_state() -> dict:
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _loss(model, tokens: torch.Tensor) -> torch.Tensor:
    if hasattr(model, "loss"):
        return model.loss(tokens)
    # A distributed wrapper (DDP) has no .loss: go through its forward so gradients are synced.
    logits = model(tokens[:, :-1])
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), tokens[:, 1:].reshape(-1))


def _smaller_micro(micro: int, rows: int) -> int | None:
    """Half the micro-batch, rounded down to a divisor of the rows per process; None below 1."""
    m = micro // 2
    while m >= 1 and rows % m:
        m -= 1
    return m if m >= 1 else None


# ---------------------------------------------------------------- the run


class _Run:
    def __init__(self, model_or_source, config: TrainConfig, train_data, out_dir: Path, name: str,
                 valid_data, progress):
        self.t0 = time.perf_counter()
        config.validate()
        self.cfg, self.data, self.valid, self.name, self.progress = config, train_data, valid_data, name, progress
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        cuda = torch.cuda.is_available()
        self.precision = resolve_precision(config.precision, cuda)
        self.acc = _accelerator(self.precision, cuda)
        self.main = self.acc.is_main_process
        self.world = self.acc.num_processes
        self.rank = self.acc.process_index
        if config.batch_size % self.world:
            raise ValueError(f"batch_size {config.batch_size} must divide among {self.world} processes")
        self.rows = config.batch_size // self.world
        self.micro = min(config.micro_batch_size or self.rows, self.rows)
        if self.rows % self.micro:
            raise ValueError(f"micro_batch_size {self.micro} must divide the {self.rows} rows per process")
        data_vocab = getattr(train_data, "vocab_size", None)
        if data_vocab is not None and int(data_vocab) > config.vocab_size:
            raise ValueError(f"the data's tokenizer has {data_vocab} ids but vocab_size is {config.vocab_size}")
        self.fp = fingerprint(config, _identity(model_or_source, train_data), self.precision)
        self.total = config.steps
        self.kill_at = int(os.environ.get(KILL_ENV) or 0)
        self.log: list[dict] = []
        self.window = {"loss": [], "grad_norm": [], "tokens": 0, "time": 0.0}
        self.checkpoints = Checkpoints(self.out_dir)

        torch.manual_seed(config.seed)
        if isinstance(model_or_source, str):
            from designs.loader import load_source

            module = load_source(model_or_source, name)
            model = module.build_model(d_model=config.d_model, n_block=config.n_block,
                                       vocab_size=config.vocab_size, device=self.acc.device)
        else:
            model = model_or_source.to(self.acc.device)
        model.train()
        self.flops_per_token, self.flops_error = self._measure_flops(model)
        self.peak = peak_flops(self.acc.device)
        opt = adamw(param_groups(model, config.weight_decay), config)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, functools.partial(
            lr_factor, total=self.total, warmup=config.warmup, min_ratio=config.min_lr_ratio))
        self.model, self.opt, self.sched = self.acc.prepare(model, opt, sched)
        self.raw = self.acc.unwrap_model(self.model)
        self.loss_fn = self._compiled_loss(config.compile, cuda)
        torch.manual_seed(config.seed)  # training RNG (dropout) starts from the seed, whatever came before
        self.step, self.resumed_from, self.prior_s = 0, None, 0.0
        self._resume()

    def _compiled_loss(self, setting: str, cuda: bool):
        """torch.compile of the training loss, or None (eager). "auto" compiles on one CUDA device:
        on an H100 at the gpu ladder's 14M rung it trained GPT-2 1.6x and Mamba-2 2.2x faster than
        eager (benchmarks/gpu_step.py). CPU runs stay eager unless asked (compiling there needs a
        C++ toolchain and costs tens of seconds against runs of minutes; not measured to pay), and
        so do several processes (compiling through the DDP wrapper is not handled here). A
        compiled step that raises anything but out-of-memory is redone eager, for the rest of
        the run, and logged as "compile_failed"."""
        if setting == "off" or (setting == "auto" and not (cuda and self.world == 1)):
            return None
        model = self.model
        return torch.compile(lambda tokens: _loss(model, tokens))

    def _measure_flops(self, model) -> tuple[float, str]:
        from designs.model import measure_flops

        try:
            return float(measure_flops(model, seq_len=self.cfg.seq_len, vocab_size=self.cfg.vocab_size)
                         .train_per_token), ""
        except Exception as exc:  # noqa: BLE001 - training may still work; MFU is then unknown
            model.zero_grad(set_to_none=True)
            return float("nan"), f"FLOPs not measured: {type(exc).__name__}: {exc}"

    # ------------------------------------------------------------ state
    def _state(self) -> dict:
        return {"format": _FORMAT, "fingerprint": self.fp, "name": self.name, "step": self.step,
                "model": self.raw.state_dict(), "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict(), "rng": _rng_state(), "micro_batch_size": self.micro,
                "log": self.log, "window": {k: v for k, v in self.window.items() if k in ("loss", "grad_norm")},
                "config": self.cfg.to_dict(), "elapsed_s": self._elapsed()}

    def _elapsed(self) -> float:
        """Wall seconds of this run so far, the calls it resumed from included (up to the
        checkpoint each was resumed at; the time a killed call spent after it is not known)."""
        return round(self.prior_s + time.perf_counter() - self.t0, 3)

    def _resume(self) -> None:
        state = self.checkpoints.load_latest(self.fp, prune=self.main)
        log_path = self.out_dir / TRAIN_LOG
        if state is None:
            if self.main:
                log_path.write_text("", encoding="utf-8")
            return
        self.raw.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        self.step = self.resumed_from = int(state["step"])
        self.prior_s = float(state.get("elapsed_s", 0.0))  # checkpoints written before it was kept: 0
        self.micro = min(self.micro, int(state["micro_batch_size"]))
        self.log = list(state["log"])
        self.window["loss"] = list(state["window"]["loss"])
        self.window["grad_norm"] = list(state["window"]["grad_norm"])
        if self.main:  # the log as it was at the checkpoint: later lines belong to the lost run
            tmp = log_path.with_name(f".{TRAIN_LOG}.tmp-{os.getpid()}")
            tmp.write_text("".join(json.dumps(e) + "\n" for e in self.log), encoding="utf-8")
            os.replace(tmp, log_path)

    def _append_log(self, entry: dict) -> None:
        self.log.append(entry)
        if self.main:
            with open(self.out_dir / TRAIN_LOG, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(entry) + "\n")

    # ------------------------------------------------------------ one step
    def _forward_backward(self, tokens: torch.Tensor, micro: int) -> torch.Tensor:
        n = tokens.shape[0] // micro
        if self.acc.gradient_accumulation_steps != n:
            self.acc.gradient_accumulation_steps = n  # accelerator.backward divides each loss by n
        total = None
        for i in range(n):
            mb = tokens[i * micro:(i + 1) * micro].to(self.acc.device, non_blocking=True)
            sync = contextlib.nullcontext() if i == n - 1 else self.acc.no_sync(self.model)
            with sync:
                with self.acc.autocast():
                    loss = self.loss_fn(mb) if self.loss_fn is not None else _loss(self.model, mb)
                self.acc.backward(loss)
            total = loss.detach() if total is None else total + loss.detach()
        return total / n

    def _train_step(self) -> tuple[float, float] | None:
        """Forward/backward with OOM back-off: (loss, grad norm) before the update, or None (stopped)."""
        cfg = self.cfg
        tokens = step_batch(self.data, cfg.batch_size, cfg.seq_len, cfg.seed, self.step)
        tokens = tokens[self.rank * self.rows:(self.rank + 1) * self.rows]
        rng = _rng_state()
        while True:
            error = None
            compile_error = None
            try:
                loss = self._forward_backward(tokens, self.micro)
            except Exception as exc:  # noqa: BLE001 - out-of-memory and compile failures are handled
                if is_out_of_memory(exc):
                    error = f"{type(exc).__name__}: {str(exc)[:200]}"
                elif self.loss_fn is not None:
                    compile_error = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
                else:
                    raise
            if compile_error is not None:  # the step again, eager: an error there is the design's own
                self.loss_fn = None
                self.opt.zero_grad(set_to_none=True)
                _set_rng_state(rng)
                self._append_log({"step": self.step + 1, "event": "compile_failed", "error": compile_error})
                continue
            if error is None:
                break
            # outside the except block: the traceback (and the tensors it holds) is gone
            self.opt.zero_grad(set_to_none=True)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            _set_rng_state(rng)
            smaller = _smaller_micro(self.micro, self.rows)
            self._append_log({"step": self.step + 1, "event": "oom_backoff", "micro_batch_size": smaller,
                              "previous_micro_batch_size": self.micro, "error": error})
            if smaller is None:
                self.stop_reason = f"out of memory at micro-batch 1 (step {self.step + 1}): {error}"
                return None
            self.micro = smaller
        if self.world > 1:
            loss = self.acc.reduce(loss, "mean")
        clip = cfg.grad_clip if cfg.grad_clip else float("inf")
        grad_norm = self.acc.clip_grad_norm_(self.model.parameters(), clip)
        return float(loss), float(grad_norm)

    def _evaluate(self) -> float | None:
        if self.valid is None:
            return None
        cfg = self.cfg
        if hasattr(self.valid, "eval_batches"):
            batches = self.valid.eval_batches(self.rows, cfg.seq_len, max_batches=cfg.eval_batches)
        else:
            batches = (step_batch(self.valid, self.rows, cfg.seq_len, cfg.seed + 1, i) for i in range(cfg.eval_batches))
        total, count = 0.0, 0
        self.model.eval()
        try:
            with torch.no_grad():
                for batch in batches:
                    for i in range(0, batch.shape[0], self.micro):
                        mb = batch[i:i + self.micro].to(self.acc.device)
                        with self.acc.autocast():
                            loss = _loss(self.model, mb)
                        n = mb.shape[0] * (mb.shape[1] - 1)
                        total += float(loss) * n
                        count += n
        finally:
            self.model.train()
        return total / count if count else None

    # ------------------------------------------------------------ the loop
    def run(self) -> TrainResult:
        cfg = self.cfg
        status, reason, final_loss = "completed", "", float("nan")
        self.stop_reason = ""
        trained_tokens, trained_time = 0, 0.0
        val_loss = None
        if self.resumed_from is not None and self.log:
            steps_logged = [e for e in self.log if "loss" in e and "event" not in e]
            if steps_logged:
                final_loss = steps_logged[-1]["loss"]
                val_loss = next((e["val_loss"] for e in reversed(self.log) if "val_loss" in e), None)
        compiling = self.loss_fn is not None
        while self.step < self.total:
            t = time.perf_counter()
            lr = self.sched.get_last_lr()[0]
            out = self._train_step()
            if out is None:
                status, reason = "stopped", self.stop_reason
                break
            loss, grad_norm = out
            step_no = self.step + 1
            bad = None
            if not math.isfinite(loss):
                bad = f"the training loss became {loss} at step {step_no}"
            elif not math.isfinite(grad_norm):
                bad = f"the gradient norm became {grad_norm} at step {step_no} (loss {loss:.4f})"
            elif step_no > cfg.warmup and loss > cfg.divergence_bound:
                bad = (f"the training loss {loss:.4f} at step {step_no} is above the divergence bound "
                       f"{cfg.divergence_bound:.4f}")
            if bad:
                self.opt.zero_grad(set_to_none=True)
                status, reason, final_loss = "diverged", bad, loss
                self._append_log({"step": step_no, "event": "diverged", "loss": loss, "grad_norm": grad_norm,
                                  "lr": lr, "reason": bad})
                break
            self.opt.step()
            self.sched.step()
            self.opt.zero_grad(set_to_none=True)
            self.step = step_no
            dt = time.perf_counter() - t
            w = self.window
            w["loss"].append(loss)
            w["grad_norm"].append(grad_norm)
            if compiling and self.loss_fn is not None:  # this step compiled the loss: not throughput
                self._append_log({"step": step_no, "event": "compiled", "seconds": round(dt, 2)})
            else:
                trained_tokens += cfg.tokens_per_step
                trained_time += dt
                w["tokens"] += cfg.tokens_per_step
                w["time"] += dt
            compiling = False
            last = self.step == self.total
            evaluate = self.valid is not None and (last or (cfg.eval_every and self.step % cfg.eval_every == 0))
            if evaluate or last or self.step % cfg.log_every == 0:
                entry = self._log_entry(lr)
                if evaluate:
                    val_loss = self._evaluate()
                    if val_loss is not None:
                        entry["val_loss"] = val_loss
                final_loss = entry["loss"]
                self._append_log(entry)
                if self.progress is not None:
                    self.progress({**entry, "total_steps": self.total, "name": self.name})
            if cfg.checkpoint_every and (last or self.step % cfg.checkpoint_every == 0):
                self._checkpoint()
            if self.kill_at and self.step == self.kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
        if status == "completed":
            self._write_final()
        tps = trained_tokens / trained_time if trained_time > 0 else 0.0
        mfu = (self.flops_per_token * tps / self.peak
               if self.peak and tps and math.isfinite(self.flops_per_token) else None)
        reason = reason or self.flops_error
        result = TrainResult(
            status=status, steps=self.step, tokens=self.step * cfg.tokens_per_step, final_loss=final_loss,
            wall_s=round(time.perf_counter() - self.t0, 3), tokens_per_s=tps,
            model_flops_per_token=self.flops_per_token, mfu=mfu, peak_flops=self.peak, log=self.log,
            resumed_from=self.resumed_from, micro_batch_size=self.micro, reason=reason, val_loss=val_loss,
            total_steps=self.total, precision=self.precision, device=str(self.acc.device),
            out_dir=str(self.out_dir), prior_s=self.prior_s)
        if self.main:
            _write_json(self.out_dir / "result.json", result.to_dict())
        return result

    def _log_entry(self, lr: float) -> dict:
        w = self.window
        tps = w["tokens"] / w["time"] if w["time"] > 0 else None
        mfu = (self.flops_per_token * tps / self.peak
               if tps and self.peak and math.isfinite(self.flops_per_token) else None)
        entry = {"step": self.step, "tokens": self.step * self.cfg.tokens_per_step,
                 "loss": sum(w["loss"]) / len(w["loss"]), "grad_norm": sum(w["grad_norm"]) / len(w["grad_norm"]),
                 "lr": lr, "tokens_per_s": tps, "mfu": mfu, "micro_batch_size": self.micro,
                 "total_steps": self.total, "elapsed_s": self._elapsed()}
        self.window = {"loss": [], "grad_norm": [], "tokens": 0, "time": 0.0}
        return entry

    def _checkpoint(self) -> None:
        self.acc.wait_for_everyone()
        if self.main:
            self.checkpoints.save(self._state())
        self.acc.wait_for_everyone()

    def _write_final(self) -> None:
        from safetensors.torch import save_model

        self.acc.wait_for_everyone()
        if not self.main:
            return
        final = self.out_dir / "final"
        tmp = self.out_dir / f".final.tmp-{os.getpid()}-{secrets.token_hex(3)}"
        tmp.mkdir()
        try:
            save_model(self.raw, str(tmp / "model.safetensors"))
            model_config = getattr(self.raw, "config", None)
            info = {**self.cfg.to_dict(), "name": self.name, "fingerprint": self.fp, "steps": self.step,
                    "precision_resolved": self.precision,
                    "model": asdict(model_config) if hasattr(model_config, "__dataclass_fields__") else None}
            (tmp / "config.json").write_text(json.dumps(info, indent=1), encoding="utf-8")
            old = None
            if final.exists():
                old = self.out_dir / f".final.old-{os.getpid()}-{secrets.token_hex(3)}"
                os.rename(final, old)
            os.rename(tmp, final)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def train(model_or_source, config: TrainConfig, train_data, out_dir: Path, *, name: str = "design",
          valid_data=None, progress=None) -> TrainResult:
    """Train a design (composed source, run here: sandbox only) or a built module; see the module doc."""
    return _Run(model_or_source, config, train_data, Path(out_dir), name, valid_data, progress).run()


# ---------------------------------------------------------------- the sandbox entry


def _data_arg(args: dict, key: str, vocab_size: int):
    """Training or validation data from the entry's args: `<key>_tokens` (a list of ids, or a
    string taken as UTF-8 bytes) or `<key>_shards` (a TokenShards folder the sandbox can read:
    under the output directory, /tmp/out inside, or inside the repository)."""
    tokens = args.get(f"{key}_tokens")
    if tokens is not None:
        if isinstance(tokens, str):
            tokens = list(tokens.encode("utf-8", errors="replace"))
        return TokenArray(tokens, vocab_size)
    shards = args.get(f"{key}_shards")
    if shards:
        from verifier.data.corpus import TokenShards

        return TokenShards(shards)
    return None


def run_entry(source: str, name: str, args: dict) -> dict:
    """The sandbox's "train" entry: args = {"config": TrainConfig dict, "train_tokens" | "train_shards",
    optional "valid_tokens" | "valid_shards", optional "out_dir" (default /tmp/out, the caller's
    output_dir, when the sandbox has one, else ./train in the job's working directory)}."""
    config = TrainConfig.from_dict(args["config"])
    train_data = _data_arg(args, "train", config.vocab_size)
    if train_data is None:
        raise ValueError("the train entry needs train_tokens or train_shards in its args")
    valid_data = _data_arg(args, "valid", config.vocab_size)
    out_dir = args.get("out_dir") or ("/tmp/out" if os.path.isdir("/tmp/out") and os.access("/tmp/out", os.W_OK)
                                      else "train")
    return train(source, config, train_data, Path(out_dir), name=name, valid_data=valid_data).to_dict()
