"""Measuring designs in a child process, so the main process never runs design code.

The parent sends a JSON request on stdin to `python -m designs.measure` and reads a
JSON reply from stdout. A request holds jobs, one per design:

    {"jobs": [{"tree": {...}, "targets": [3000000], "sizes": [[256, 4]],
               "vocab_size": 256, "flops_seq_len": 128}]}

and each job's reply is `{"ok": true, "sizes": [SIZE, ...]}` with, per size,
d_model, n_block, non_embedding_params, total_params (and target and error for a
target), flops_forward_per_token, flops_train_per_token; or `{"ok": false,
"error": "one line", "kind": "TreeError" | "SizingError" | "exception"}`.

The child runs with a wall-clock timeout and an environment without secrets; the
verifier's sandbox adds resource limits and network isolation on top.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import traceback

SECRET = re.compile(r"(_API_KEY|_TOKEN|_SECRET|PASSWORD|CREDENTIALS)$|^(AWS|GOOGLE|AZURE|OPENAI|ANTHROPIC)_")


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


def clean_env() -> dict:
    """The environment without API keys, tokens and cloud credentials."""
    return {k: v for k, v in os.environ.items() if not SECRET.search(k)}


def measure_isolated(jobs: list[dict], timeout: float = 300.0) -> list[dict]:
    """Run measurement jobs in a child process; one reply per job, in order."""
    request = json.dumps({"jobs": jobs})
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = clean_env()
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    try:
        done = subprocess.run([sys.executable, "-m", "designs.measure"], input=request, text=True,
                              capture_output=True, timeout=timeout, env=env, cwd=root)
    except subprocess.TimeoutExpired:
        raise MeasureError(f"measuring timed out after {timeout:.0f} s") from None
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise MeasureError(f"measuring process exited with {done.returncode}: {tail}")
    try:
        replies = json.loads(done.stdout.strip().splitlines()[-1])["replies"]
    except (json.JSONDecodeError, IndexError, KeyError):
        raise MeasureError(f"measuring process gave no reply: {done.stdout[-200:]!r}") from None
    return replies


def main() -> None:
    request = json.load(sys.stdin)
    replies = [run_job(job) for job in request["jobs"]]
    sys.stdout.write("\n" + json.dumps({"replies": replies}) + "\n")


if __name__ == "__main__":
    main()
