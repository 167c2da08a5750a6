"""Entry points a sandbox job can name. These run INSIDE the sandbox, next to design code.

Each takes the job request (`source`, `name`, `args`, ...) and returns a JSON-able
dict, the result's payload. Raising is fine: the sandbox turns exceptions into an
`exception` / `out_of_memory` / `nonfinite` result with the design's own lines.

- "exec": execute the source as a module; with `args["call"]`, call that function
  with `args["kwargs"]` and return its value. For exported modules and for tests.
- "measure": parameter counts, sizing and FLOPs of unit trees (designs.measure jobs).
- "check": the functional checker (verifier.functional) on the design source.
- "synthetic": the synthetic rung (verifier.synthetic_eval): each task trained and scored.
- "lm_eval": a trained checkpoint's lm-eval scoring or decoding (verifier.lmeval.model.sandbox_entry).
- "train": the trainer (verifier.train) on the design source: checkpoints and weights to the output dir.
"""

from __future__ import annotations

import os


def _threads() -> None:
    import torch

    torch.set_num_threads(int(os.environ.get("GENESYS_THREADS", "2")))


def exec_source(request: dict) -> dict:
    from designs.loader import load_source

    args = request.get("args", {})
    module = load_source(request["source"], request.get("name", "design"))
    if not args.get("call"):
        return {"defined": sorted(k for k in vars(module) if not k.startswith("_"))}
    value = getattr(module, args["call"])(**args.get("kwargs", {}))
    return {"value": value}


def measure(request: dict) -> dict:
    from designs.measure import run_job

    _threads()
    return {"replies": [run_job(job) for job in request["args"]["jobs"]]}


def check(request: dict) -> dict:
    from verifier.functional import run_functional_checks

    _threads()
    return run_functional_checks(request["source"], request.get("name", "design"), request.get("args", {}))


def synthetic(request: dict) -> dict:
    from verifier.synthetic_eval import run_suite

    _threads()
    return run_suite(request["source"], request.get("name", "design"), request.get("args", {}))


def train(request: dict) -> dict:
    """The trainer (verifier.train.run_entry): args = {"config": TrainConfig dict, "train_tokens" (a list
    of ids) or "train_shards" (a TokenShards folder the sandbox can read, e.g. under the output_dir,
    which it sees as /tmp/out), optional "valid_tokens"/"valid_shards", optional "out_dir"}. Writes
    checkpoints, the log and the final weights to the output directory; returns the TrainResult."""
    from verifier.train import run_entry

    _threads()
    return run_entry(request["source"], request.get("name", "design"), request.get("args", {}))


def lm_eval(request: dict) -> dict:
    """args = {"checkpoint": folder, "mode": "score" | "generate", "work": [...], "device", "batch_size",
    "max_length", "dtype"}; see verifier.lmeval.model.SandboxedGenesysLM."""
    _threads()
    from verifier.lmeval.model import sandbox_entry

    return sandbox_entry(request["args"])


ENTRIES = {"exec": exec_source, "measure": measure, "check": check, "synthetic": synthetic, "train": train,
           "lm_eval": lm_eval}


def run(request: dict) -> dict:
    entry = request.get("entry")
    if entry not in ENTRIES:
        raise KeyError(f"unknown sandbox entry point {entry!r}; known: {', '.join(ENTRIES)}")
    return ENTRIES[entry](request)
