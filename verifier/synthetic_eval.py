"""The synthetic rung: train a design on each synthetic task from scratch and score the skill.

Runs INSIDE the sandbox (entry point "synthetic"). For every task of the suite, a fresh
model (sized once to the rung's non-embedding parameter target; the vocabulary is the
task's) is trained with AdamW (the trainer's warmup + cosine and parameter groups) on the
task's training split, the loss counted only at the positions that test the skill (the
MAD protocol scores those), then scored by accuracy on the test split at the same
positions. Deterministic by seed.
"""

from __future__ import annotations

import time

import torch
from torch.nn import functional as F

from designs.loader import load_source
from designs.sizing import fit_config
from verifier.data.synthetic import IGNORE, accuracy, generate, task_config
from verifier.train import lr_factor, param_groups


def train_task(module, d_model: int, n_block: int, task: str, preset: str, steps: int, batch: int, lr: float,
               seed: int = 0, progress=None) -> dict:
    """Train one task from scratch; returns its test accuracy, final loss and time.

    Every step sees fresh examples (the training split is made as large as the run needs),
    as the MAD and Zoology protocols do with their large training sets: on a small split
    repeated for many epochs a model memorizes sequences instead of learning the skill.
    """
    cfg = task_config(task, preset)
    if cfg.n_train < steps * batch:
        cfg = task_config(task, preset, n_train=steps * batch)
    train = generate(cfg, "train", seed=seed)
    test = generate(cfg, "test", seed=seed)
    torch.manual_seed(seed)
    model = module.build_model(d_model=d_model, n_block=n_block, vocab_size=cfg.vocab_size)
    opt = torch.optim.AdamW(param_groups(model, 0.1), lr=lr, betas=(0.9, 0.95))
    warmup = max(1, steps // 10)
    g = torch.Generator().manual_seed(seed + 1)
    started, loss = time.perf_counter(), torch.tensor(float("nan"))
    n = train.inputs.shape[0]
    order = torch.randperm(n, generator=g)
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * lr_factor(step, steps, warmup, 0.1)
        idx = order[(step * batch) % n:(step * batch) % n + batch]
        x, y = train.inputs[idx], train.targets[idx]
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1), ignore_index=IGNORE)
        if not torch.isfinite(loss):
            from verifier.sandbox_child import NonFiniteError

            raise NonFiniteError(f"task {task}: the training loss became {loss.item()} at step {step + 1}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if progress and (step + 1) % 50 == 0:
            progress({"task": task, "step": step + 1, "steps": steps, "loss": loss.item()})
    model.eval()
    correct_logits = []
    with torch.no_grad():
        for i in range(0, test.inputs.shape[0], 256):
            correct_logits.append(model(test.inputs[i:i + 256]))
    acc = accuracy(torch.cat(correct_logits), test.targets)
    return {"accuracy": acc, "final_loss": round(loss.item(), 4), "seconds": round(time.perf_counter() - started, 2),
            "vocab_size": cfg.vocab_size, "seq_len": cfg.seq_len}


def run_suite(source: str, name: str, args: dict, progress=None) -> dict:
    """The sandbox entry's work: every task of the suite; returns per-task results and the mean accuracy."""
    module = load_source(source, name)
    size = fit_config(module, int(args["target_params"]), vocab_size=256, name=name)
    tasks = args.get("tasks") or []
    results = {}
    for task in tasks:
        results[task] = train_task(module, size.d_model, size.n_block, task, args.get("preset", "quick"),
                                   int(args["steps"]), int(args["batch"]), float(args["lr"]),
                                   int(args.get("seed", 0)), progress)
    accs = {t: r["accuracy"] for t, r in results.items()}
    return {"accuracy": accs, "mean_accuracy": sum(accs.values()) / max(1, len(accs)), "tasks": results,
            "d_model": size.d_model, "n_block": size.n_block, "params": size.non_embedding_params}
