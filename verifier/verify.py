"""Verifying a design on a rung of a ladder: check, size, train and score it, in the sandbox.

    result = verify_design(tree, "cpu", "lm-xs", run_dir)     # -> RungResult, also in the archive

A design that fails its check is not trained. On an `lm` rung the design is sized to
the rung's parameter target (`fit_config`, in the sandbox), the rung's corpus is
tokenized once into cached shards, and the trainer (verifier.train, sandbox entry
"train") trains it with the rung's settings, writing checkpoints into the run
directory so that a killed verification resumes where it stopped; validation loss and
bits per byte are measured on the corpus's held-out files, and the rung's lm-eval tasks
(the gpu ladder's: the paper's nine benchmarks) are run on the trained weights with the
design's code in the sandbox (their data is loaded before training: a benchmark that
cannot be had fails the verification before any compute is spent). On the `synthetic` rung each
task of the suite is trained and scored (sandbox entry "synthetic"). The result goes
to the archive with the corpus and tokenizer fingerprints, the config and the hardware.
"""

from __future__ import annotations

import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from designs.tree import UnitTree
from verifier.ladder import Rung, get_rung, scaled
from verifier.sandbox import Limits, SandboxResult, measure_isolated, run_job


class VerificationError(RuntimeError):
    """A verification could not run (bad rung, data unavailable, sizing impossible)."""


@dataclass
class RungResult:
    design: str
    rung: str
    seed: int
    status: str  # "ok" | "check_failed" | "diverged" | "failed"
    metrics: dict = field(default_factory=dict)
    error: str = ""
    wall_s: float = 0.0  # this verification's wall time, earlier killed attempts it resumed included
    out_dir: str = ""
    config: dict = field(default_factory=dict)
    prior_s: float = 0.0  # of wall_s, the training time of those earlier attempts

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict:
        return asdict(self)


def hardware() -> dict:
    import torch

    info = {"machine": platform.machine(), "cpus": os.cpu_count(), "torch": torch.__version__}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpus"] = torch.cuda.device_count()
    return info


def _sandbox_failure(result: SandboxResult) -> str:
    where = ""
    for frame in reversed(result.frames or []):
        if frame.get("unit"):
            where = f" (unit {frame['unit']} line {frame.get('unit_line')})"
            break
    return f"{result.status}: {result.error}{where}"


def _size(tree: UnitTree, target: int, vocab_size: int) -> dict:
    reply = measure_isolated([{"tree": tree.to_dict(), "targets": [target], "vocab_size": vocab_size}])[0]
    if not reply["ok"]:
        raise VerificationError(f"{tree.name} cannot be sized to {target:,} parameters: {reply['error']}")
    return reply["sizes"][0]


def _lm_data(rung: Rung, cache_dir: Path | None):
    from verifier.data.corpus import load_corpus, pretokenize
    from verifier.data.tokenizers import load_tokenizer

    corpus = load_corpus(rung.corpus)
    tokenizer = load_tokenizer(rung.tokenizer, corpus=corpus, cache_dir=cache_dir)
    # Enough tokens for the rung's training (plus slack for random windows) and a fixed validation slice.
    train = pretokenize(corpus, "train", tokenizer, cache_dir=cache_dir,
                        max_tokens=None if getattr(corpus, "bounded", True) else int(rung.tokens * 1.2))
    valid = pretokenize(corpus, "validation", tokenizer, cache_dir=cache_dir,
                        max_tokens=None if getattr(corpus, "bounded", True) else 2_000_000)
    return corpus, tokenizer, train, valid


def verify_design(tree: UnitTree, ladder: str, rung_name: str, run_dir: str | os.PathLike, *, seed: int = 0,
                  scale: float = 1.0, check: bool = True, archive=None, cache_dir: Path | None = None,
                  progress=None, threads: int = 2, corpus: str | None = None,
                  tokenizer: str | None = None, tasks: tuple[str, ...] | None = None) -> RungResult:
    """Verify one design on one rung; records the result in `archive` when given.

    `threads`: torch threads of the training job (several jobs at once share the cores).
    `corpus`, `tokenizer`: train language-modeling rungs on this corpus, with this
    tokenizer, instead of the rung's own (a machine that cannot reach the rung's data);
    `tasks`: these lm-eval tasks after training instead of the rung's own (() for none).
    A rung with lm-eval tasks loads their data before training; what cannot be had
    fails the verification at once.
    """
    rung = get_rung(ladder, rung_name)
    if scale != 1.0:
        rung = scaled(rung, scale)
    if corpus and rung.kind == "lm":
        rung = replace(rung, corpus=corpus)
    if tokenizer and rung.kind == "lm":
        rung = replace(rung, tokenizer=tokenizer)
    if tasks is not None and rung.kind == "lm":
        rung = replace(rung, eval_suite=tuple(tasks))
    started = time.monotonic()
    out_dir = Path(run_dir) / "verify" / tree.name / f"{ladder}-{rung.name}" / f"seed{seed}"
    if check:
        from verifier.checker import CheckOptions, check_tree

        if progress:
            progress({"phase": "check", "design": tree.name})
        tree, report = check_tree(tree, CheckOptions())
        if not report.ok:
            first = report.errors[0]
            return RungResult(tree.name, rung.name, seed, "check_failed", {"check": report.to_dict()},
                              f"{first.check}: {first.message.splitlines()[0]}", time.monotonic() - started)
    source = tree.compose(include_tests=False)
    if rung.kind == "synthetic":
        result = _synthetic(tree, source, rung, seed, progress, threads)
        corpus_fp, tokenizer_fp = "synthetic-quick", "task-vocab"
    else:
        result, corpus_fp, tokenizer_fp = _lm(tree, source, rung, seed, out_dir, cache_dir, progress, threads)
    result.wall_s = round(time.monotonic() - started + result.prior_s, 2)
    result.out_dir = str(out_dir)
    if archive is not None and result.status in ("ok", "diverged"):
        archive.record_verification(
            tree.name, rung=f"{ladder}/{rung.name}", seed=seed, corpus_fp=corpus_fp, tokenizer_fp=tokenizer_fp,
            metrics=_json_safe(result.metrics), wall_time_s=result.wall_s, hardware=hardware(),
            config={**result.config, "rung": rung.to_dict()})
    return result


def _synthetic(tree: UnitTree, source: str, rung: Rung, seed: int, progress, threads: int) -> RungResult:
    if progress:
        progress({"phase": "synthetic", "design": tree.name, "tasks": len(rung.eval_suite)})
    args = {"target_params": rung.target_params, "tasks": list(rung.eval_suite), "steps": rung.steps,
            "batch": rung.batch, "lr": rung.lr, "seed": seed, "preset": "quick"}
    result = run_job("synthetic", source, name=tree.name, args=args,
                     limits=Limits(timeout_s=rung.timeout_s, threads=threads))
    if not result.ok:
        status = "diverged" if result.status == "nonfinite" else "failed"
        return RungResult(tree.name, rung.name, seed, status, {}, _sandbox_failure(result), config=args)
    payload = result.payload
    metrics = {"accuracy": payload["accuracy"], "mean_accuracy": payload["mean_accuracy"],
               "params": payload["params"], "d_model": payload["d_model"], "n_block": payload["n_block"],
               "task_seconds": {t: r["seconds"] for t, r in payload["tasks"].items()}}
    return RungResult(tree.name, rung.name, seed, "ok", metrics, config=args)


def _train_limits(rung: Rung, size: dict, threads: int) -> Limits:
    """Room for checkpoints: weights, gradients' Adam moments and the embedding, ~16 bytes a parameter."""
    params = size["total_params"]
    return Limits(timeout_s=rung.timeout_s, memory_mb=max(8192, params * 64 >> 20), threads=threads,
                  file_size_mb=max(256, (params * 20 >> 20) + 256))


def _lm(tree, source, rung, seed, out_dir, cache_dir, progress, threads):
    from verifier.train import TrainConfig

    if progress:
        progress({"phase": "data", "design": tree.name, "corpus": rung.corpus})
    corpus, tokenizer, train, valid = _lm_data(rung, cache_dir)
    if rung.eval_suite:  # before any training: a benchmark whose data cannot be had fails now, not after
        from verifier.evaluate import EvaluationError, prepare_tasks

        if progress:
            progress({"phase": "lm_eval_data", "design": tree.name, "tasks": list(rung.eval_suite)})
        try:
            prepare_tasks(rung.eval_suite)
        except EvaluationError as e:
            return (RungResult(tree.name, rung.name, seed, "failed", {}, f"rung {rung.name}'s lm-eval tasks: {e}"),
                    corpus.fingerprint("train"), tokenizer.fingerprint)
    size = _size(tree, rung.target_params, tokenizer.vocab_size)
    config = TrainConfig(d_model=size["d_model"], n_block=size["n_block"], vocab_size=tokenizer.vocab_size,
                         seq_len=rung.context, batch_size=rung.batch, micro_batch_size=rung.micro_batch,
                         max_tokens=rung.tokens, lr=rung.lr, seed=seed, log_every=10,
                         checkpoint_every=max(20, rung.steps // 10), eval_every=0, eval_batches=32)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "design.py").write_text(source)
    args = {"config": config.to_dict(), "train_shards": str(train.path), "valid_shards": str(valid.path)}
    if progress:
        progress({"phase": "train", "design": tree.name, "steps": config.steps, "log": str(out_dir / "train_log.jsonl")})
    result = run_job("train", source, name=tree.name, args=args, output_dir=out_dir,
                     read_paths=[train.path, valid.path], limits=_train_limits(rung, size, threads))
    identity = {"d_model": size["d_model"], "n_block": size["n_block"], "params": size["non_embedding_params"],
                "train": config.to_dict(), "corpus": rung.corpus, "tokenizer": rung.tokenizer}
    corpus_fp, tokenizer_fp = corpus.fingerprint("train"), tokenizer.fingerprint
    if not result.ok:
        status = "diverged" if result.status == "nonfinite" else "failed"
        return RungResult(tree.name, rung.name, seed, status, {}, _sandbox_failure(result),
                          config=identity), corpus_fp, tokenizer_fp
    r = result.payload
    prior = r["prior_s"]  # training time of killed attempts this one resumed
    val = r.get("val_loss")
    bpb = val / (math.log(2) * valid.bytes_per_token) if val is not None else None
    metrics = {"bpb": bpb, "val_loss": val, "train_loss": r["final_loss"], "tokens": r["tokens"],
               "steps": r["steps"], "tokens_per_s": r["tokens_per_s"], "mfu": r.get("mfu"),
               "flops_per_token": r["model_flops_per_token"], "params": size["non_embedding_params"],
               "d_model": size["d_model"], "n_block": size["n_block"]}
    if r["status"] == "diverged":
        return RungResult(tree.name, rung.name, seed, "diverged", metrics, r.get("reason", "diverged"),
                          config=identity, prior_s=prior), corpus_fp, tokenizer_fp
    if r["status"] != "completed" or bpb is None:
        return RungResult(tree.name, rung.name, seed, "failed", metrics, r.get("reason") or "no validation loss",
                          config=identity, prior_s=prior), corpus_fp, tokenizer_fp
    if rung.eval_suite:
        metrics.update(_benchmarks(tree, source, rung, out_dir, tokenizer, _train_limits(rung, size, threads),
                                   progress))
    return (RungResult(tree.name, rung.name, seed, "ok", metrics, config=identity, prior_s=prior),
            corpus_fp, tokenizer_fp)


def _benchmarks(tree, source, rung, out_dir, tokenizer, limits, progress) -> dict:
    """The rung's lm-eval tasks on the trained weights, the design's code in the sandbox only.

    A failure here leaves the verification ok (its validation loss stands) with the reason
    under "lm_eval_error"."""
    import torch

    from verifier.evaluate import EvaluationError, complete_checkpoint, run_lm_eval

    if progress:
        progress({"phase": "lm_eval", "design": tree.name, "tasks": list(rung.eval_suite)})
    try:
        final = complete_checkpoint(out_dir / "final", source, tokenizer, corpus=rung.corpus)
        results = run_lm_eval(final, list(rung.eval_suite), limit=rung.eval_limit, batch_size=16,
                              device="cuda" if torch.cuda.is_available() else "cpu", sandbox=limits)
    except (EvaluationError, OSError, ValueError) as e:
        return {"lm_eval_error": str(e)}
    meta = results.pop("_meta", {})
    return {"lm_eval": results, "lm_eval_seconds": round(meta.get("seconds", 0.0), 1)}


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value
