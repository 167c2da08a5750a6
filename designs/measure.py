"""Measuring designs: the job a sandboxed child runs, so the main process never runs design code.

`verifier.sandbox.measure_isolated(jobs)` runs these jobs in the sandbox (entry
point "measure"). A job is one design:

    {"tree": {...}, "targets": [3000000], "sizes": [[256, 4]], "vocab_size": 256, "flops_seq_len": 128}

and each job's reply is `{"ok": true, "sizes": [SIZE, ...]}` with, per size,
d_model, n_block, non_embedding_params, total_params (and target and error for a
target), flops_forward_per_token, flops_train_per_token; or `{"ok": false,
"error": "one line", "kind": "TreeError" | "SizingError" | "exception"}`.
"""

from __future__ import annotations

import traceback


class MeasureError(RuntimeError):
    """The measuring child process failed as a whole (timeout, crash, bad reply)."""


def _measure_size(module, d_model: int, n_block: int, job: dict) -> dict:
    from designs.model import build_lm, count_params, measure_flops

    non_emb, total = count_params(module, d_model, n_block, job.get("vocab_size", 256))
    out = {"d_model": d_model, "n_block": n_block, "non_embedding_params": non_emb, "total_params": total}
    if job.get("flops_seq_len"):
        model = build_lm(module, d_model, n_block, job.get("vocab_size", 256))
        flops = measure_flops(model, job["flops_seq_len"], job.get("vocab_size", 256))
        out.update(flops_forward_per_token=flops.forward_per_token, flops_train_per_token=flops.train_per_token)
    return out


def run_job(job: dict) -> dict:
    """Measure one design (this runs its code: child side only)."""
    from designs.model import load_design_module
    from designs.sizing import SizingError, fit_config
    from designs.tree import TreeError, UnitTree

    try:
        tree = UnitTree.from_dict(job["tree"])
        module = load_design_module(tree)
        sizes = []
        for target in job.get("targets", []):
            cfg = fit_config(module, int(target), vocab_size=job.get("vocab_size", 256), name=tree.name)
            sizes.append({**_measure_size(module, cfg.d_model, cfg.n_block, job), "target": cfg.target,
                          "error": cfg.error})
        for d_model, n_block in job.get("sizes", []):
            sizes.append(_measure_size(module, int(d_model), int(n_block), job))
        return {"ok": True, "sizes": sizes}
    except (TreeError, SizingError) as e:
        return {"ok": False, "kind": type(e).__name__, "error": str(e)}
    except Exception as e:  # design code can raise anything: report it, keep the others going
        frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename.startswith("<design")]
        where = f" ({frames[-1].filename} line {frames[-1].lineno}: {frames[-1].line})" if frames else ""
        return {"ok": False, "kind": "exception", "error": f"{type(e).__name__}: {e}{where}"}
