"""Evaluation of trained designs: validation loss and bits per byte, synthetic
accuracy, checkpoints, and the ``lm-eval`` harness.

* ``validation_loss(model, shards_or_tokens, seq_len, ...)``: mean next-token loss
  (nats per token) over consecutive windows from the start of a held-out split, and
  bits per byte, comparable across tokenizers.
* ``synthetic_accuracy(model, task_data)``: argmax accuracy on a generated
  synthetic task (``verifier.data.synthetic``), batched, without gradients.
* ``save_checkpoint`` / ``load_checkpoint``: the checkpoint layout the trainer
  writes and evaluation reads (see ``save_checkpoint``).
* ``run_lm_eval(checkpoint_dir, tasks, ...)``: the checkpoint through
  ``lm_eval.simple_evaluate`` with the ``genesys`` model
  (``verifier/lmeval/model.py``) and our offline tasks (``verifier/lmeval/tasks``),
  metrics returned compactly. Tasks whose data must come from the Hugging Face Hub
  fail fast with ``EvaluationError`` when the Hub cannot be reached and the data
  is not cached.

``load_checkpoint`` executes the design's source in this process: do it only for
trusted code (seeds, tests) or inside the sandbox, where product evaluation runs.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import tempfile
import time
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import torch
from torch.nn import functional as F

__all__ = [
    "EvaluationError",
    "complete_checkpoint",
    "LMEVAL_TASKS_DIR",
    "OFFLINE_TASKS",
    "PAPER_TASKS",
    "PAPER_TASK_DATASETS",
    "load_checkpoint",
    "prepare_tasks",
    "run_lm_eval",
    "save_checkpoint",
    "synthetic_accuracy",
    "validation_loss",
]

LMEVAL_TASKS_DIR = Path(__file__).resolve().parent / "lmeval" / "tasks"
# Tasks defined in LMEVAL_TASKS_DIR: they need no download.
OFFLINE_TASKS = ("genesys_continuation",)

# The Genesys paper's nine benchmarks, by their lm-eval 0.4.13 names: blimp is a
# group (67 tasks), inverse_scaling_mc a tag (the multiple-choice inverse-scaling
# tasks); the rest are single tasks.
PAPER_TASKS = ["blimp", "wnli", "rte", "winogrande", "cola", "sst2", "wsc273", "inverse_scaling_mc", "mrpc"]
# Their datasets on the Hub and their folder under lm_eval/tasks (so that they can
# be loaded without indexing every task the harness ships, which takes ~20 s).
PAPER_TASK_DATASETS = {
    "blimp": ("nyu-mll/blimp", "blimp"),
    "wnli": ("nyu-mll/glue", "glue/wnli"),
    "rte": ("nyu-mll/glue", "glue/rte"),
    "winogrande": ("allenai/winogrande", "winogrande"),
    "cola": ("nyu-mll/glue", "glue/cola"),
    "sst2": ("nyu-mll/glue", "glue/sst2"),
    "wsc273": ("lighteval/winograd_wsc", "wsc273"),
    "inverse_scaling_mc": ("inverse-scaling/*", "inverse_scaling"),
    "mrpc": ("nyu-mll/glue", "glue/mrpc"),
}

CHECKPOINT_FILES = ("design.py", "model.safetensors", "config.json")
CONFIG_REQUIRED = ("name", "d_model", "n_block", "vocab_size")


class EvaluationError(Exception):
    """Evaluation cannot run. The message (one line) says why and what to do."""


# -- validation loss --------------------------------------------------------------------


def _model_device(model: torch.nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _token_windows(tokens, seq_len: int, batch_size: int, max_batches: int | None):
    """Consecutive windows of seq_len + 1 tokens overlapping by one, from the start."""
    data = torch.as_tensor(np.asarray(tokens).astype(np.int64) if not torch.is_tensor(tokens) else tokens)
    data = data.reshape(-1).long()
    n = data.numel()
    starts = list(range(0, max(n - 1, 0) - seq_len + 1, seq_len))
    done = 0
    for i in range(0, len(starts), batch_size):
        yield torch.stack([data[s:s + seq_len + 1] for s in starts[i:i + batch_size]])
        done += 1
        if max_batches is not None and done >= max_batches:
            return


@torch.no_grad()
def validation_loss(
    model: torch.nn.Module,
    shards_or_tokens,
    seq_len: int,
    batch_size: int = 8,
    max_batches: int | None = None,
    bytes_per_token: float | None = None,
) -> dict:
    """Mean next-token cross-entropy over the first ``max_batches`` batches of
    consecutive windows of ``seq_len`` targets (each token is a target once; no
    randomness, so two calls give the same number).

    ``shards_or_tokens``: ``TokenShards`` or anything with the same
    ``eval_batches`` (they give the windows; ``bytes_per_token``, when the object
    has it, gives the bytes) or a 1-D token sequence (tensor, array
    or list; ``bytes_per_token`` then defaults to 1, right for the byte tokenizer).

    Returns ``{"loss": nats per token, "bits_per_byte", "tokens", "bytes_per_token"}``
    where bits per byte = loss * tokens / (ln 2 * bytes), bytes = tokens *
    bytes_per_token: comparable between byte and BPE models. (For shards,
    bytes_per_token is the split's average, applied to the windows scored.)"""
    if seq_len < 1 or batch_size < 1:
        raise ValueError("seq_len and batch_size must be >= 1")
    if hasattr(shards_or_tokens, "eval_batches"):
        batches = shards_or_tokens.eval_batches(batch_size, seq_len, max_batches)
        if bytes_per_token is None:
            bytes_per_token = float(getattr(shards_or_tokens, "bytes_per_token", 1.0))
    else:
        batches = _token_windows(shards_or_tokens, seq_len, batch_size, max_batches)
    bytes_per_token = 1.0 if bytes_per_token is None else float(bytes_per_token)
    if bytes_per_token <= 0:
        raise ValueError(f"bytes_per_token must be > 0, got {bytes_per_token}")
    was_training = model.training
    model.eval()
    device = _model_device(model)
    total_nats, total_tokens = 0.0, 0
    try:
        for batch in batches:
            batch = batch.to(device)
            logits = model(batch[:, :-1])
            nats = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), batch[:, 1:].reshape(-1),
                                   reduction="sum")
            total_nats += float(nats)
            total_tokens += batch[:, 1:].numel()
    finally:
        model.train(was_training)
    if total_tokens == 0:
        raise EvaluationError(f"no validation window of {seq_len + 1} tokens: the split is too short")
    loss = total_nats / total_tokens
    bits_per_byte = total_nats / (math.log(2) * total_tokens * bytes_per_token)
    return {"loss": loss, "bits_per_byte": bits_per_byte, "tokens": total_tokens,
            "bytes_per_token": bytes_per_token}


# -- synthetic accuracy -----------------------------------------------------------------


@torch.no_grad()
def synthetic_accuracy(model: torch.nn.Module, task_data, batch_size: int = 64) -> float:
    """Argmax accuracy of ``model`` on a generated task (``TaskData``, or an
    ``(inputs, targets)`` pair) over the scored positions (targets != IGNORE),
    as ``verifier.data.synthetic.accuracy`` counts it, in batches."""
    from verifier.data.synthetic import IGNORE, accuracy

    if isinstance(task_data, (tuple, list)):
        inputs, targets = task_data
    else:
        inputs, targets = task_data.inputs, task_data.targets
    was_training = model.training
    model.eval()
    device = _model_device(model)
    correct, total = 0.0, 0
    try:
        for i in range(0, inputs.shape[0], batch_size):
            x = inputs[i:i + batch_size].to(device)
            y = targets[i:i + batch_size].to(device)
            n = int((y != IGNORE).sum())
            if n == 0:
                continue
            logits = model(x)
            correct += accuracy(logits, y) * n
            total += n
    finally:
        model.train(was_training)
    return correct / total if total else float("nan")


# -- checkpoints --------------------------------------------------------------------------


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide it from sandbox jobs, which run under their own uid
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(model: torch.nn.Module, source: str, config: dict, path, tokenizer=None) -> Path:
    """Write a checkpoint folder: ``design.py`` (the composed design source),
    ``model.safetensors`` (``safetensors.torch.save_model``, which handles the tied
    embedding and head) and ``config.json``: at least ``name``, ``d_model``,
    ``n_block``, ``vocab_size`` (taken from ``model.config`` when missing),
    ``tokenizer`` (``"byte"``, ``"bpe:4096"``...; default ``"byte"``), ``corpus``
    and ``seq_len``; an optional ``overrides`` dict is passed to ``build_model``.
    With ``tokenizer`` given, its ``fingerprint`` is recorded and a trained
    tokenizer is saved as ``tokenizer.json`` so evaluation needs no corpus."""
    from safetensors.torch import save_model

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config = dict(config)
    lm_config = getattr(model, "config", None)
    for key in ("d_model", "n_block", "vocab_size"):
        if key not in config and lm_config is not None and hasattr(lm_config, key):
            config[key] = int(getattr(lm_config, key))
    config.setdefault("tokenizer", "byte")
    if tokenizer is not None:
        config["tokenizer_fingerprint"] = tokenizer.fingerprint
        if hasattr(tokenizer, "save"):
            tokenizer.save(path / "tokenizer.json")
    missing = [k for k in CONFIG_REQUIRED if k not in config]
    if missing:
        raise ValueError(f"checkpoint config lacks {', '.join(missing)}")
    _atomic_write(path / "design.py", source.encode("utf-8"))
    fd, tmp = tempfile.mkstemp(dir=path, prefix=".model.", suffix=".safetensors.tmp")
    os.close(fd)
    try:
        save_model(model, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path / "model.safetensors")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _atomic_write(path / "config.json", (json.dumps(config, indent=1, sort_keys=True) + "\n").encode("utf-8"))
    return path


def complete_checkpoint(path, source: str, tokenizer=None, **config) -> Path:
    """Make a trainer's ``final`` folder (weights + config.json) a checkpoint that evaluation
    and export read on their own: the design's source as ``design.py``, the tokenizer's spec
    and fingerprint (and ``tokenizer.json`` for a trained one) and ``config`` merged into
    ``config.json``."""
    path = Path(path)
    info = json.loads((path / "config.json").read_text(encoding="utf-8"))
    info.update(config)
    if tokenizer is not None:
        info["tokenizer"] = tokenizer.name
        info["tokenizer_fingerprint"] = tokenizer.fingerprint
        if hasattr(tokenizer, "save"):
            tokenizer.save(path / "tokenizer.json")
    _atomic_write(path / "design.py", source.encode("utf-8"))
    _atomic_write(path / "config.json", (json.dumps(info, indent=1, sort_keys=True) + "\n").encode("utf-8"))
    return path


def _checkpoint_tokenizer(path: Path, config: dict):
    from verifier.data.tokenizers import TokenizerError, TokenizersTokenizer, load_tokenizer

    spec = config.get("tokenizer", "byte")
    tok_file = path / "tokenizer.json"
    try:
        if spec != "byte" and tok_file.is_file():
            import tokenizers

            tokenizer = TokenizersTokenizer(tokenizers.Tokenizer.from_file(str(tok_file)), spec)
        elif spec.startswith("bpe"):
            from verifier.data.corpus import load_corpus

            tokenizer = load_tokenizer(spec, corpus=load_corpus(config.get("corpus", "stdlib")))
        else:
            tokenizer = load_tokenizer(spec)
    except TokenizerError as exc:
        raise EvaluationError(f"checkpoint {path}: {exc}") from None
    want = config.get("tokenizer_fingerprint")
    if want and want != tokenizer.fingerprint:
        raise EvaluationError(
            f"checkpoint {path}: tokenizer {spec!r} has fingerprint {tokenizer.fingerprint}, "
            f"the model was trained with {want}: put the training tokenizer.json in the checkpoint"
        )
    if tokenizer.vocab_size > int(config["vocab_size"]):
        raise EvaluationError(f"checkpoint {path}: tokenizer vocabulary {tokenizer.vocab_size} exceeds the "
                              f"model's {config['vocab_size']}")
    return tokenizer


def load_checkpoint(path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                    source: str | None = None):
    """``(model, config, tokenizer)`` from a checkpoint folder (see
    ``save_checkpoint``), the model in eval mode on ``device``. ``source`` (the
    composed design) stands in for a missing ``design.py``. A config without
    ``tokenizer`` means ``"byte"``. Executes the design's source: trusted code or
    the sandbox only."""
    from safetensors.torch import load_model

    from designs.loader import load_source

    path = Path(path)
    missing = [f for f in CHECKPOINT_FILES if not (path / f).is_file() and not (f == "design.py" and source)]
    if missing:
        raise EvaluationError(f"{path} is not a checkpoint: missing {', '.join(missing)}")
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except ValueError as exc:
        raise EvaluationError(f"{path}/config.json is not valid JSON: {exc}") from None
    lacking = [k for k in CONFIG_REQUIRED if k not in config]
    if lacking:
        raise EvaluationError(f"{path}/config.json lacks {', '.join(lacking)}")
    if source is None:
        source = (path / "design.py").read_text(encoding="utf-8")
    module = load_source(source, str(config["name"]))
    model = module.build_model(
        d_model=int(config["d_model"]), n_block=int(config["n_block"]), vocab_size=int(config["vocab_size"]),
        device=device, dtype=dtype, **dict(config.get("overrides") or {}),
    )
    load_model(model, str(path / "model.safetensors"), strict=True)
    model.to(device)
    model.eval()
    return model, config, _checkpoint_tokenizer(path, config)


# -- lm-eval --------------------------------------------------------------------------------


def _hub_offline() -> bool:
    """True when the datasets library is set to offline mode."""
    for var in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):
        if os.environ.get(var, "").strip().upper() in {"1", "ON", "YES", "TRUE"}:
            return True
    try:
        import datasets

        return bool(datasets.config.HF_HUB_OFFLINE)
    except Exception:  # pragma: no cover
        return False


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the Hugging Face endpoint opens within ``timeout``."""
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = url.hostname or "huggingface.co"
    port = url.port or (80 if url.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@contextmanager
def _offline_mode():
    """Make datasets and huggingface_hub offline for the duration: cached data still
    loads, anything else fails at once instead of retrying for tens of seconds."""
    import datasets
    import huggingface_hub.constants as hub_constants

    saved = (datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE)
    datasets.config.HF_HUB_OFFLINE = True
    hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE = saved


def _offline_error(task: str, dataset: str) -> EvaluationError:
    return EvaluationError(
        f"task {task} needs dataset {dataset} from the Hugging Face Hub, which cannot be reached offline "
        f"(HF_DATASETS_OFFLINE=1 or no network); use the offline task genesys_continuation or run where "
        f"the Hub is reachable"
    )


def _is_hub_error(exc: BaseException) -> bool:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (ConnectionError, socket.timeout, TimeoutError)):
            return True
        name = type(exc).__name__
        if name in {"OfflineModeIsEnabled", "LocalEntryNotFoundError", "DatasetNotFoundError",
                    "ConnectTimeout", "ConnectError", "HfHubHTTPError"}:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _dataset_in_message(exc: BaseException) -> str | None:
    while exc is not None:
        match = re.search(r"reach '([^']+)'|[Dd]ataset '([^']+)'", str(exc))
        if match:
            return match.group(1) or match.group(2)
        exc = exc.__cause__ or exc.__context__
    return None


def _task_manager(tasks: Sequence[str], include_path: Iterable[str | Path] = ()):
    """A TaskManager that knows our tasks and ``include_path``'s. It indexes only
    those folders and the paper tasks' own folders when that finds every task, and
    all of the harness's ~15,000 task files (some 20 s of YAML parsing) otherwise."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    ours = [str(LMEVAL_TASKS_DIR), *map(str, include_path)]
    builtin = Path(lm_eval.__file__).resolve().parent / "tasks"
    folders = [str(builtin / PAPER_TASK_DATASETS[t][1]) for t in tasks if t in PAPER_TASK_DATASETS]
    small = TaskManager(include_path=list(dict.fromkeys(folders + ours)), include_defaults=False)
    if all(t in small.all_tasks or t.endswith(".yaml") for t in tasks):
        return small
    return TaskManager(include_path=ours)


def _load_tasks(task_manager, tasks: Sequence[str], offline: bool) -> list:
    """Build each task (this is where datasets are loaded), turning Hub failures
    into EvaluationError naming the task and the dataset."""
    known = set(task_manager.all_tasks)
    unknown = [t for t in tasks if t not in known and not t.endswith(".yaml")]
    if unknown:
        raise EvaluationError(f"unknown lm-eval task(s) {', '.join(unknown)}: list them with "
                              "`python -m verifier.lmeval ls tasks`")
    load_spec = getattr(task_manager, "_load_spec", None)
    built = []
    for task in tasks:
        try:
            loaded = load_spec(task) if load_spec else (task_manager.load([task]), task)[1]
        except Exception as exc:
            if not _is_hub_error(exc):
                raise
            dataset = _dataset_in_message(exc) or PAPER_TASK_DATASETS.get(task, ("its dataset",))[0]
            if offline:
                raise _offline_error(task, dataset) from None
            detail = " ".join(str(exc).split())[:300]
            raise EvaluationError(f"task {task}: loading dataset {dataset} from the Hugging Face Hub failed: "
                                  f"{type(exc).__name__}: {detail}") from None
        built.extend(loaded if isinstance(loaded, list) else [loaded])
    return built


def _compact(results: dict) -> dict[str, dict[str, float]]:
    """{task or group: {metric: value}} from lm-eval's results; metric keys lose the
    ",none" filter suffix (other filters stay as "metric,filter")."""
    out: dict[str, dict[str, float]] = {}
    for section in ("results", "groups"):
        for name, metrics in (results.get(section) or {}).items():
            row = out.setdefault(name, {})
            for key, value in metrics.items():
                if key in ("alias", "sample_len") or not isinstance(value, (int, float)) or isinstance(value, bool):
                    continue
                metric, _, filt = key.partition(",")
                row[metric if filt in ("", "none") else key] = float(value)
    for name, n in (results.get("n-samples") or {}).items():
        if name in out and isinstance(n, dict):
            out[name]["samples"] = float(n.get("effective", n.get("original", 0)))
    return out


def _treat_as_offline(tasks: Sequence[str], hub_timeout: float) -> bool:
    """Offline mode is set, or some task needs the Hub and no connection to it opens within
    ``hub_timeout`` seconds: datasets then load from the local cache only."""
    needs_hub = any(t not in OFFLINE_TASKS and not t.endswith(".yaml") for t in tasks)
    return _hub_offline() or (needs_hub and not hub_reachable(hub_timeout))


def prepare_tasks(tasks: Sequence[str], include_path: Iterable[str | Path] = (), hub_timeout: float = 3.0) -> dict:
    """Build every task once, here, so that its dataset is downloaded into the Hugging Face
    cache (or found there) before anything is trained; an unreachable dataset raises
    ``EvaluationError`` naming the task and the dataset. Returns ``{"offline": bool,
    "seconds": float}``. The ladder calls it before training a rung that has lm-eval tasks."""
    tasks = [tasks] if isinstance(tasks, str) else list(tasks)
    offline = _treat_as_offline(tasks, hub_timeout)
    start = time.perf_counter()
    with _offline_mode() if offline else _nullcontext():
        _load_tasks(_task_manager(tasks, include_path), tasks, offline)
    return {"offline": offline, "seconds": time.perf_counter() - start}


def run_lm_eval(
    checkpoint_dir,
    tasks: Sequence[str] = ("genesys_continuation",),
    limit: int | float | None = None,
    batch_size: int = 16,
    device: str | None = None,
    num_fewshot: int | None = None,
    bootstrap_iters: int = 1000,
    include_path: Iterable[str | Path] = (),
    hub_timeout: float = 3.0,
    raw: bool = False,
    model_args: dict | None = None,
    sandbox=None,
) -> dict:
    """Evaluate a checkpoint with ``lm_eval.simple_evaluate`` (model ``genesys``).

    ``tasks``: lm-eval task, group or tag names (``PAPER_TASKS`` for the paper's
    nine; ``genesys_continuation`` needs no download). Returns ``{name: {metric:
    value, metric_stderr: ..., "samples": n}}`` for every task and group (metric
    names without lm-eval's ",none" filter suffix), plus ``"_meta"`` (seconds,
    limit, lm-eval version, whether the Hub was treated as offline); or
    lm-eval's full result dict with ``raw=True``. ``model_args``: more arguments
    of the genesys model (``max_length``, ``dtype``, ``max_gen_toks``). ``sandbox``
    (a ``verifier.sandbox.Limits``, or True for the defaults): run the design's code
    only in the sandbox (``SandboxedGenesysLM``); the checkpoint must then be
    complete (its ``design.py`` and, for a trained tokenizer, ``tokenizer.json``).

    When the Hub is unreachable (offline mode set, or no connection within
    ``hub_timeout`` seconds) datasets load from the local cache only; a task whose
    dataset is not there raises ``EvaluationError`` at once, before any model call.
    ``bootstrap_iters`` (for the stderr of metrics such as mcc and f1) is lower
    than lm-eval's 100,000 to keep CPU runs short."""
    import lm_eval

    import verifier.lmeval.model  # noqa: F401  (registers "genesys")

    tasks = [t for t in (tasks if not isinstance(tasks, str) else [tasks])]
    if not tasks:
        raise EvaluationError("no lm-eval task given")
    checkpoint_dir = Path(checkpoint_dir)
    missing = [f for f in CHECKPOINT_FILES if not (checkpoint_dir / f).is_file()]
    if missing:
        raise EvaluationError(f"{checkpoint_dir} is not a checkpoint: missing {', '.join(missing)}")
    offline = _treat_as_offline(tasks, hub_timeout)
    start = time.perf_counter()
    with _offline_mode() if offline else _nullcontext():
        task_manager = _task_manager(tasks, include_path)
        built = _load_tasks(task_manager, tasks, offline)
        if sandbox is not None:
            from verifier.lmeval.model import SandboxedGenesysLM

            model = SandboxedGenesysLM(str(checkpoint_dir), limits=None if sandbox is True else sandbox,
                                       device=device or "cpu", batch_size=batch_size, **(model_args or {}))
        else:
            model = "genesys"
        results = lm_eval.simple_evaluate(
            model=model,
            model_args={**(model_args or {}), "checkpoint": str(checkpoint_dir)} if sandbox is None else None,
            tasks=built,
            limit=limit,
            batch_size=batch_size,
            device=device,
            num_fewshot=num_fewshot,
            bootstrap_iters=bootstrap_iters,
            log_samples=False,
            task_manager=task_manager,
        )
    if results is None:  # only on non-zero ranks
        return {}
    if raw:
        return results
    out = _compact(results)
    out["_meta"] = {"seconds": time.perf_counter() - start, "limit": limit, "lm_eval": lm_eval.__version__,
                    "offline": offline}
    return out


@contextmanager
def _nullcontext():
    yield


def format_results(results: dict[str, Any]) -> str:
    """A plain table of ``run_lm_eval``'s compact results."""
    lines = []
    for name, metrics in results.items():
        if name.startswith("_"):
            continue
        shown = ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k != "samples")
        lines.append(f"{name}: {shown}" + (f" (n={int(metrics['samples'])})" if "samples" in metrics else ""))
    return "\n".join(lines)
