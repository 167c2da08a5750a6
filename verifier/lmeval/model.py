"""The ``genesys`` model for lm-evaluation-harness 0.4: a trained design checkpoint
(see ``verifier.evaluate.save_checkpoint``) behind lm-eval's ``TemplateLM`` API.

Model arguments (``--model_args`` / ``model_args=``): ``checkpoint=DIR`` (required
unless a model object is passed in Python), ``device`` (default ``cpu``; a CUDA
device that is not available falls back to CPU with a warning), ``batch_size``
(default 16; ``auto`` means 16, at most ``max_batch_size``), ``max_length`` (default
the checkpoint's ``seq_len``), ``max_gen_toks`` (default 256), ``dtype``
(``float32`` default, ``bfloat16``, ``float16``).

* ``loglikelihood``: the summed log-probability of the continuation tokens given
  the context, and whether greedy decoding would produce exactly them. Contexts are
  left-truncated to ``max_length``; a continuation longer than that is scored in
  windows as ``loglikelihood_rolling`` does (lm-eval's HF model refuses it).
* ``loglikelihood_rolling``: the document's log-likelihood after the end-of-text
  token, in disjoint windows of ``max_length`` predictions, each with as much
  preceding context as fits (``lm_eval.utils.get_rolling_token_windows``).
* ``generate_until``: greedy decoding, one request at a time, without a cache:
  stops at the first ``until`` string (cut from the output), at end-of-text, or
  after ``max_gen_toks`` tokens. Sampling arguments are ignored (greedy only).

Scoring batches windows of similar length, padded on the right with end-of-text:
designs are causal (the checker verifies it), so padding after a position cannot
change its logits.

``SandboxedGenesysLM`` is the same model for a checkpoint of untrusted design code:
this process tokenizes and lm-eval builds the requests here, while every forward pass
runs in one sandbox job per request kind (``verifier.sandbox``, entry ``lm_eval``),
so the design's code never runs in the caller's process. The ladder evaluates
trained designs this way (``verifier.verify``).

Importing this module registers the model. lm-eval 0.4.13 discovers no
third-party models (no entry points), so its ``lm_eval`` command knows ``genesys``
only when the task is given as the path of our YAML (whose data module imports
this one); otherwise use ``python -m verifier.lmeval ...``
(``verifier/lmeval/__main__.py``), which imports it and runs lm-eval's command line
with the same arguments. See ``verifier/lmeval/__init__.py``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

import lm_eval.models  # noqa: F401  (lm-eval's own models first: get_model imports them only into an empty registry)
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 16
DEFAULT_MAX_LENGTH = 1024
DEFAULT_MAX_GEN_TOKS = 256
_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float16": torch.float16, "fp16": torch.float16}


def _pick_device(device) -> torch.device:
    dev = torch.device(device or "cpu")
    if dev.type == "cuda" and not torch.cuda.is_available():
        log.warning("genesys: CUDA is not available, evaluating on CPU")
        return torch.device("cpu")
    return dev


def _batch_size(batch_size, max_batch_size) -> int:
    if batch_size is None:
        return DEFAULT_BATCH_SIZE
    if isinstance(batch_size, str):
        text = batch_size.strip().lower()
        if text.startswith("auto"):
            cap = int(max_batch_size) if max_batch_size else DEFAULT_BATCH_SIZE
            return max(1, min(DEFAULT_BATCH_SIZE, cap))
        batch_size = int(text)
    return max(1, int(batch_size))


@register_model("genesys")
class GenesysLM(TemplateLM):
    """A Genesys design checkpoint as an lm-eval model (see the module docstring)."""

    backend = "causal"

    def __init__(
        self,
        checkpoint: str | None = None,
        device: str | None = "cpu",
        batch_size: int | str | None = DEFAULT_BATCH_SIZE,
        max_batch_size: int | None = None,
        max_length: int | None = None,
        max_gen_toks: int = DEFAULT_MAX_GEN_TOKS,
        dtype: str | None = None,
        model: torch.nn.Module | None = None,
        tokenizer=None,
        **unused,
    ) -> None:
        super().__init__()
        if unused:
            log.warning("genesys: ignoring model arguments %s", ", ".join(sorted(unused)))
        self._device = _pick_device(device)
        torch_dtype = None
        if dtype not in (None, "auto"):
            if str(dtype) not in _DTYPES:
                raise ValueError(f"genesys: unknown dtype {dtype!r}; use one of {', '.join(_DTYPES)}")
            torch_dtype = _DTYPES[str(dtype)]
        self.config: dict = {}
        self.checkpoint = str(checkpoint) if checkpoint else None
        if model is None:
            if not checkpoint:
                raise ValueError("genesys: pass model_args checkpoint=DIR (a folder written by save_checkpoint)")
            from verifier.evaluate import load_checkpoint

            model, self.config, tokenizer = load_checkpoint(Path(checkpoint), device=self._device)
        elif tokenizer is None:
            raise ValueError("genesys: a model passed in needs its tokenizer too")
        if torch_dtype is not None:
            model = model.to(torch_dtype)
        self.model = model.to(self._device).eval()
        self.tok = tokenizer
        self._settings(max_length, batch_size, max_batch_size, max_gen_toks)

    def _settings(self, max_length, batch_size, max_batch_size, max_gen_toks) -> None:
        """Context length (default: the checkpoint's seq_len), batch size and generation length."""
        self._max_length = int(max_length or self.config.get("seq_len") or DEFAULT_MAX_LENGTH)
        if self._max_length < 2:
            raise ValueError(f"genesys: max_length must be >= 2, got {self._max_length}")
        self.batch_size = _batch_size(batch_size, max_batch_size)
        self.max_gen_toks = int(max_gen_toks)

    # -- tokenization ---------------------------------------------------------------

    @property
    def eot_token_id(self) -> int:
        return int(self.tok.eos_id)

    @property
    def max_length(self) -> int:
        return self._max_length

    @property
    def tokenizer_name(self) -> str:
        return f"genesys-{self.tok.name}-{self.tok.fingerprint}"

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        return [int(i) for i in self.tok.encode(string)]

    def tok_decode(self, tokens) -> str:
        return self.tok.decode([int(t) for t in tokens])

    def get_model_info(self) -> dict:
        info = {"genesys_checkpoint": self.checkpoint, "genesys_max_length": self.max_length,
                "genesys_tokenizer": self.tok.name}
        if self.config:
            info["genesys_design"] = self.config.get("name")
        if hasattr(self.model, "num_params"):
            info["genesys_params_non_embedding"] = int(self.model.num_params())
        return info

    # -- scoring --------------------------------------------------------------------

    def _windows(self, tokens: list[int], n_pred: int) -> list[tuple[list[int], int]]:
        """Model inputs that together predict the last ``n_pred`` of ``tokens``,
        each with as much context as fits: (input, number of predicted positions at
        its end). Each input is at most max_length long."""
        L, m = len(tokens), self.max_length
        if not 1 <= n_pred <= L - 1:
            raise ValueError(f"cannot predict {n_pred} of {L} tokens (the first token needs a context)")
        out = []
        a = L - n_pred
        while a < L:
            b = min(L, a + m)
            lo = max(0, b - 1 - m)
            out.append((tokens[lo:b - 1], b - a))
            a = b
        return out

    @torch.no_grad()
    def _score(self, items: list[tuple[list[int], int]], disable_tqdm: bool = True) -> list[tuple[float, bool]]:
        """For each (tokens, n_pred): the summed log-probability of the last n_pred
        tokens given the ones before, and whether each of them is the argmax."""
        windows = []  # (item index, input, n_pred, targets)
        for idx, (tokens, n_pred) in enumerate(items):
            tokens = list(tokens)
            pos = len(tokens) - n_pred
            for inp, n in self._windows(tokens, n_pred):
                windows.append((idx, inp, n, tokens[pos:pos + n]))
                pos += n
        order = sorted(range(len(windows)), key=lambda i: -len(windows[i][1]))
        logprob = [0.0] * len(items)
        greedy = [True] * len(items)
        pad = self.eot_token_id
        bar = tqdm(total=len(order), desc="genesys scoring", disable=disable_tqdm)
        for start in range(0, len(order), self.batch_size):
            chunk = [windows[i] for i in order[start:start + self.batch_size]]
            width = max(len(w[1]) for w in chunk)
            batch = torch.full((len(chunk), width), pad, dtype=torch.long)
            for r, (_, inp, _, _) in enumerate(chunk):
                batch[r, :len(inp)] = torch.tensor(inp, dtype=torch.long)
            logits = self.model(batch.to(self._device))
            for r, (idx, inp, n, targets) in enumerate(chunk):
                rows = logits[r, len(inp) - n:len(inp)].float()
                logp = F.log_softmax(rows, dim=-1)
                tgt = torch.tensor(targets, dtype=torch.long, device=logp.device)
                logprob[idx] += float(logp.gather(-1, tgt[:, None]).sum())
                greedy[idx] = greedy[idx] and bool((rows.argmax(-1) == tgt).all())
            bar.update(len(chunk))
        bar.close()
        return list(zip(logprob, greedy))

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> list[tuple[float, bool]]:
        items = []
        for (context, continuation), context_enc, continuation_enc in requests:
            if not continuation_enc:
                items.append(None)
                continue
            items.append((list(context_enc) + list(continuation_enc), len(continuation_enc)))
        live = [it for it in items if it is not None]
        scored = iter(self._score(live, disable_tqdm=disable_tqdm))
        results = []
        for (request, item) in zip(requests, items):
            result = (0.0, True) if item is None else next(scored)
            results.append(result)
            self.cache_hook.add_partial("loglikelihood", request[0], result)
        return results

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        items = []
        for request in requests:
            (string,) = request.args
            tokens = self.tok_encode(string)
            items.append(([self.prefix_token_id] + tokens, len(tokens)) if tokens else None)
        live = [it for it in items if it is not None]
        scored = iter(self._score(live, disable_tqdm=disable_tqdm))
        results = []
        for request, item in zip(requests, items):
            value = 0.0 if item is None else next(scored)[0]
            results.append(value)
            self.cache_hook.add_partial("loglikelihood_rolling", (request.args[0],), value)
        return results

    # -- generation -------------------------------------------------------------------

    @torch.no_grad()
    def _greedy(self, context: str, until: list[str], max_gen_toks: int) -> str:
        tokens = self.tok_encode(context) if context else [self.prefix_token_id]
        generated: list[int] = []
        text = ""
        for _ in range(max_gen_toks):
            window = (tokens + generated)[-self.max_length:]
            logits = self.model(torch.tensor([window], dtype=torch.long, device=self._device))
            nxt = int(logits[0, -1].float().argmax())
            if nxt == self.eot_token_id:
                break
            generated.append(nxt)
            text = self.tok_decode(generated)
            cut = min((text.find(s) for s in until if s and s in text), default=-1)
            if cut >= 0:
                return text[:cut]
        return text

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        results = []
        for request in tqdm(requests, desc="genesys generating", disable=disable_tqdm):
            context, gen_kwargs = request.args
            gen_kwargs = dict(gen_kwargs or {})
            until = gen_kwargs.pop("until", None) or []
            if isinstance(until, str):
                until = [until]
            max_gen_toks = int(gen_kwargs.pop("max_gen_toks", self.max_gen_toks))
            text = self._greedy(context, list(until), max_gen_toks)
            results.append(text)
            self.cache_hook.add_partial("generate_until", (context, request.args[1]), text)
        return results


class SandboxedGenesysLM(GenesysLM):
    """``GenesysLM`` whose model runs in the sandbox: no design code in this process.

    ``checkpoint``: a complete checkpoint folder (``design.py``, ``model.safetensors``,
    ``config.json``, and ``tokenizer.json`` for a trained tokenizer). Its tokenizer is
    loaded here (data, not code); each ``_score`` or ``generate_until`` call sends all
    of its requests to one sandbox job that loads the checkpoint there and runs
    ``GenesysLM``'s own scoring or decoding. ``limits``: the job's ``Limits``.
    """

    def __init__(self, checkpoint: str, limits=None, device: str | None = "cpu",
                 batch_size: int | str | None = DEFAULT_BATCH_SIZE, max_batch_size: int | None = None,
                 max_length: int | None = None, max_gen_toks: int = DEFAULT_MAX_GEN_TOKS, dtype: str | None = None,
                 **unused) -> None:
        TemplateLM.__init__(self)
        if unused:
            log.warning("genesys: ignoring model arguments %s", ", ".join(sorted(unused)))
        import json

        from verifier.evaluate import CHECKPOINT_FILES, EvaluationError, _checkpoint_tokenizer

        path = Path(checkpoint)
        missing = [f for f in CHECKPOINT_FILES if not (path / f).is_file()]
        if missing:
            raise EvaluationError(f"{path} is not a checkpoint: missing {', '.join(missing)}")
        self.checkpoint, self.limits = str(path), limits
        self.config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        self.tok = _checkpoint_tokenizer(path, self.config)
        self.model = None
        self._device_name = str(device or "cpu")
        self.dtype = dtype
        self._settings(max_length, batch_size, max_batch_size, max_gen_toks)

    def get_model_info(self) -> dict:
        return {"genesys_checkpoint": self.checkpoint, "genesys_max_length": self.max_length,
                "genesys_tokenizer": self.tok.name, "genesys_design": self.config.get("name"),
                "genesys_sandboxed": True}

    def _job(self, mode: str, work: list) -> list:
        from verifier.evaluate import EvaluationError
        from verifier.sandbox import run_job

        source = (Path(self.checkpoint) / "design.py").read_text(encoding="utf-8")
        args = {"checkpoint": self.checkpoint, "mode": mode, "work": work, "device": self._device_name,
                "batch_size": self.batch_size, "max_length": self.max_length, "dtype": self.dtype}
        result = run_job("lm_eval", source, name=str(self.config.get("name", "design")), args=args,
                         limits=self.limits, read_paths=[self.checkpoint])
        if not result.ok:
            raise EvaluationError(f"design {self.config.get('name')}: lm-eval {mode} in the sandbox failed: "
                                  f"{result.status}: {result.error}")
        return result.payload["results"]

    def _score(self, items: list[tuple[list[int], int]], disable_tqdm: bool = True) -> list[tuple[float, bool]]:
        if not items:
            return []
        return [(float(lp), bool(g)) for lp, g in self._job("score", [[list(t), n] for t, n in items])]

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        work = []
        for request in requests:
            context, gen_kwargs = request.args
            gen_kwargs = dict(gen_kwargs or {})
            until = gen_kwargs.pop("until", None) or []
            work.append([context, [until] if isinstance(until, str) else list(until),
                         int(gen_kwargs.pop("max_gen_toks", self.max_gen_toks))])
        results = self._job("generate", work) if work else []
        for request, text in zip(requests, results):
            self.cache_hook.add_partial("generate_until", (request.args[0], request.args[1]), text)
        return results


def sandbox_entry(args: dict) -> dict:
    """Inside the sandbox: load the checkpoint and score or decode what the caller sent."""
    lm = GenesysLM(checkpoint=args["checkpoint"], device=args.get("device") or "cpu",
                   batch_size=args.get("batch_size"), max_length=args.get("max_length"), dtype=args.get("dtype"))
    if args["mode"] == "score":
        return {"results": [list(r) for r in lm._score([(t, n) for t, n in args["work"]])]}
    if args["mode"] == "generate":
        return {"results": [lm._greedy(context, until, n) for context, until, n in args["work"]]}
    raise ValueError(f"unknown lm_eval mode {args['mode']!r}")
