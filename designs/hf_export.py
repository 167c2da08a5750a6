"""Export a trained design as a Hugging Face model directory.

    result = export_hf(tree, "runs/r/verify/d/cpu-lm-xs/seed0/final", ByteTokenizer(), "out/d")
    # then, anywhere with torch and transformers (no genesys needed):
    model = AutoModelForCausalLM.from_pretrained("out/d", trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained("out/d")

The directory holds

- `genesys_design.py`: the design's composed source (every unit, the GAU runtime and
  `DesignLM`), unchanged: the same code that was trained;
- `configuration_genesys.py` and `modeling_genesys.py`: a `PretrainedConfig` and a
  `PreTrainedModel` + `GenerationMixin` that wraps the design's `DesignLM` under
  `model.` (so the logits are the trained model's, bit for bit);
- `config.json` (`model_type` genesys_<name>, `auto_map` to those files),
  `generation_config.json` and `model.safetensors` (the embedding stored once, tied to
  the head; every buffer stored, see below);
- the tokenizer as `tokenizer.json` + `tokenizer_config.json` for
  `PreTrainedTokenizerFast`, so `AutoTokenizer` loads it without remote code. The
  byte-level tokenizer becomes a `tokenizers` BPE with the 256 byte symbols (GPT-2's
  byte-to-character table) as ids 0-255 and no merges: ids equal UTF-8 byte values,
  as in `ByteTokenizer`. It declares no end-of-text token (a special token would
  capture the character that stands for byte 0 in text); the models' end of text, id
  0, is in `config.json` and `generation_config.json`. A BPE (or any `tokenizers`)
  tokenizer is saved as is, its end-of-text token declared.

Two choices keep loading exact for any design. transformers builds models on the
"meta" device and then refills non-persistent buffers with uninitialized memory,
expecting each model's `_init_weights` to recompute them; a design has no such code.
So the export stores every buffer in `model.safetensors` (the modeling file marks
them persistent) and the model is built on the real device (a design's `__init__` may
compute with tensors). Generation recomputes the whole prefix at every step (designs
keep no key-value cache) and takes no padding: prompts of equal length only.

Building the model runs design code, so the weight conversion and the check that the
export loads, generates, and gives the original model's logits (`verify_export`)
run in the sandbox (verifier.sandbox, entry "exec").
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from designs.tree import UnitTree

DESIGN_FILE = "genesys_design.py"
CONFIG_CODE_FILE = "configuration_genesys.py"
MODELING_FILE = "modeling_genesys.py"
WEIGHTS_FILE = "model.safetensors"
DEFAULT_PROMPT = "def main():\n    "
_SOURCE_WEIGHTS = ".source.safetensors"  # a state_dict given in memory, written for the sandbox


class ExportError(Exception):
    """The export cannot be made or does not load; the message says why and what to do."""


@dataclass
class ExportResult:
    out_dir: Path
    model_type: str
    d_model: int
    n_block: int
    vocab_size: int
    tokenizer: str  # "byte", "bpe:4096", ...
    params: int  # total, the tied embedding counted once
    check: dict = field(default_factory=dict)  # verify_export's report when verified


# ---------------------------------------------------------------- the files transformers reads

_CONFIG_CODE = '''"""Configuration of the Genesys design {name!r} (exported by Genesys)."""

from transformers import PretrainedConfig


class GenesysConfig(PretrainedConfig):
    """Sizes of the design's language model: width, blocks, vocabulary, hyperparameter overrides."""

    model_type = {model_type!r}
    attribute_map = {{"hidden_size": "d_model", "num_hidden_layers": "n_block"}}

    def __init__(self, d_model=128, n_block=4, vocab_size=256, design_overrides=None, design_name="",
                 design_fingerprint="", tie_word_embeddings=True, **kwargs):
        self.d_model = d_model
        self.n_block = n_block
        self.vocab_size = vocab_size
        self.design_overrides = dict(design_overrides or {{}})
        self.design_name = design_name
        self.design_fingerprint = design_fingerprint
        kwargs.setdefault("use_cache", False)
        super().__init__(tie_word_embeddings=tie_word_embeddings, **kwargs)
'''

_MODELING_CODE = '''"""The Genesys design {name!r} as a Hugging Face causal language model (exported by Genesys).

`genesys_design.py` is the design's own composed source; this file wraps its DesignLM
(embedding -> blocks -> RMSNorm -> head tied to the embedding) under `model.`. Needs
only torch and transformers.

- Every buffer of the design is stored in model.safetensors (marked persistent here),
  and the model is built on the real device rather than "meta", so loading needs no
  design-specific initialization code.
- Generation recomputes the whole prefix at each step: the design keeps no key-value cache.
- No padding: the design sees every position, so batch prompts of equal length only.
"""

import torch
from torch.nn import functional as F
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutput

from .configuration_genesys import GenesysConfig
from .genesys_design import build_model


class GenesysPreTrainedModel(PreTrainedModel):
    config_class = GenesysConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    _no_split_modules = []

    def _init_weights(self, module):
        """Nothing to do: DesignLM initializes itself when built, and loading sets every tensor."""

    @classmethod
    def get_init_context(cls, *args, **kwargs):
        """transformers' contexts for building, without the meta device (see the module docstring)."""
        contexts = super().get_init_context(*args, **kwargs)
        return [c for c in contexts if not (isinstance(c, torch.device) and c.type == "meta")]


class GenesysForCausalLM(GenesysPreTrainedModel, GenerationMixin):
    _tied_weights_keys = {{"model.lm_head.weight": "model.embedding.weight"}}

    def __init__(self, config):
        super().__init__(config)
        self.model = build_model(d_model=config.d_model, n_block=config.n_block, vocab_size=config.vocab_size,
                                 **config.design_overrides)
        for module in self.model.modules():
            module._non_persistent_buffers_set.clear()  # every buffer is in model.safetensors
        self.post_init()

    def get_input_embeddings(self):
        return self.model.embedding

    def set_input_embeddings(self, value):
        self.model.embedding = value

    def get_output_embeddings(self):
        return self.model.lm_head

    def forward(self, input_ids=None, attention_mask=None, labels=None, **kwargs):
        """input_ids (batch, seq) -> logits (batch, seq, vocab); loss when labels are given."""
        if input_ids is None:
            raise ValueError("this model takes input_ids (inputs_embeds are not supported)")
        if attention_mask is not None and not bool(attention_mask.bool().all()):
            raise ValueError("Genesys designs take no padding mask: give prompts of equal length, unpadded")
        logits = self.model(input_ids)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                                   labels[:, 1:].reshape(-1), ignore_index=-100)
        return CausalLMOutput(loss=loss, logits=logits)

    def prepare_inputs_for_generation(self, input_ids, attention_mask=None, **kwargs):
        """The whole sequence every step: no cache to continue from."""
        return {{"input_ids": input_ids, "attention_mask": attention_mask}}
'''


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "design"


def _design_source(design: UnitTree | str, name: str | None) -> tuple[str, str, str]:
    """(composed source, design name, fingerprint) from a tree or an already composed source."""
    if isinstance(design, UnitTree):
        return design.compose(include_tests=False), name or design.name, design.fingerprint()
    if not isinstance(design, str) or "def build_model" not in design:
        raise ExportError("export_hf needs a UnitTree or a composed design source (UnitTree.compose()), which "
                          "defines build_model")
    found = re.search(r"^DESIGN_NAME = ['\"](.+?)['\"]$", design, re.MULTILINE)
    return design, name or (found.group(1) if found else "design"), hashlib.sha256(design.encode()).hexdigest()


def _weights_file(weights: str | os.PathLike) -> Path:
    """A model.safetensors: the file itself, or in a folder (a checkpoint) or its final/ (a trained run)."""
    path = Path(weights)
    for candidate in (path, path / WEIGHTS_FILE, path / "final" / WEIGHTS_FILE):
        if candidate.is_file():
            return candidate.resolve()
    raise ExportError(f"no weights at {path}: give a model.safetensors file, a checkpoint folder holding one, "
                      "or a trained run folder with final/model.safetensors")


def _shapes(weights: Path) -> tuple[int, int, int, str]:
    """(vocab_size, d_model, n_block, dtype) read from the safetensors header; runs no design code."""
    from safetensors import safe_open

    try:
        with safe_open(str(weights), framework="pt") as f:
            keys = list(f.keys())
            table = "embedding.weight" if "embedding.weight" in keys else "lm_head.weight"
            if table not in keys:
                raise ExportError(f"{weights} holds no embedding.weight: not the weights of a Genesys DesignLM")
            tensor = f.get_slice(table)
            vocab_size, d_model = tensor.get_shape()
            dtype = tensor.get_dtype()
    except ExportError:
        raise
    except Exception as exc:
        raise ExportError(f"{weights} is not a readable safetensors file: {exc}") from None
    blocks = {int(m.group(1)) for k in keys if (m := re.match(r"blocks\.(\d+)\.", k))}
    if not blocks:
        raise ExportError(f"{weights} holds no blocks.N.* tensors: not the weights of a Genesys DesignLM")
    return int(vocab_size), int(d_model), max(blocks) + 1, {"F32": "float32", "BF16": "bfloat16",
                                                           "F16": "float16"}.get(dtype, "float32")


# ---------------------------------------------------------------- tokenizers


def _bytes_to_symbols() -> dict[int, str]:
    """GPT-2's table from bytes to printable characters (the alphabet of byte-level BPE).

    Printable Latin-1 bytes stand for themselves; the other 68 bytes take the
    characters from U+0100 on, in byte order.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(256 + extra)
            extra += 1
    return table


def _byte_tokenizer_json() -> str:
    """A `tokenizers` tokenizer whose ids are UTF-8 byte values, like ByteTokenizer."""
    import tokenizers

    vocab = {symbol: byte for byte, symbol in _bytes_to_symbols().items()}
    tok = tokenizers.Tokenizer(tokenizers.models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = tokenizers.decoders.ByteLevel()
    return tok.to_str()


def _resolve_tokenizer(tokenizer):
    from verifier.data.tokenizers import Tokenizer, TokenizerError, load_tokenizer

    if isinstance(tokenizer, Tokenizer):
        return tokenizer
    spec = str(tokenizer)
    if spec.startswith("bpe"):
        raise ExportError(f"tokenizer {spec!r} is trained on a corpus: pass the tokenizer object "
                          "(verifier.data.tokenizers.load_tokenizer(spec, corpus=...)) or its tokenizer.json")
    try:
        return load_tokenizer(spec if spec == "byte" or spec.startswith("hf:") else f"hf:{spec}")
    except TokenizerError as exc:
        raise ExportError(str(exc)) from None


def write_tokenizer(tokenizer, out_dir: Path, model_max_length: int | None = None) -> dict:
    """Save a Genesys tokenizer where `AutoTokenizer.from_pretrained(out_dir)` finds it; returns its facts."""
    from verifier.data.tokenizers import ByteTokenizer

    tokenizer = _resolve_tokenizer(tokenizer)
    config: dict[str, Any] = {"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False,
                              "model_max_length": model_max_length or 1_000_000_000}
    if isinstance(tokenizer, ByteTokenizer):
        (out_dir / "tokenizer.json").write_text(_byte_tokenizer_json(), encoding="utf-8")
    elif hasattr(tokenizer, "save"):
        import tokenizers

        tokenizer.save(out_dir / "tokenizer.json")
        saved = tokenizers.Tokenizer.from_file(str(out_dir / "tokenizer.json"))
        config["eos_token"] = saved.id_to_token(tokenizer.eos_id)
    else:
        raise ExportError(f"tokenizer {tokenizer.name!r} ({type(tokenizer).__name__}) cannot be exported: byte "
                          "and tokenizers-based (BPE, tokenizer.json) tokenizers can")
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
    return {"name": tokenizer.name, "vocab_size": tokenizer.vocab_size, "eos_id": tokenizer.eos_id,
            "fingerprint": tokenizer.fingerprint}


# ---------------------------------------------------------------- the export


def export_hf(design: UnitTree | str, weights, tokenizer, out_dir: str | os.PathLike, *, name: str | None = None,
              overrides: dict | None = None, overwrite: bool = False, verify: bool = True,
              prompt: str = DEFAULT_PROMPT, timeout_s: float = 600.0) -> ExportResult:
    """Write a Hugging Face model directory for a trained design (see the module docstring).

    design: the UnitTree, or its composed source. weights: a model.safetensors, a folder
    holding one (a checkpoint, or a trained run with final/), or a state_dict of the
    DesignLM. tokenizer: a verifier.data.tokenizers Tokenizer, "byte", or a
    tokenizer.json path. overrides: hyperparameters the model was built with (default
    none, as the trainer builds it). With `verify`, the directory is loaded in the
    sandbox and checked (see `verify_export`); a failed check raises ExportError and
    leaves nothing at out_dir.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise ExportError(f"{out_dir} exists and is not empty: choose another --out or overwrite it")
    source, name, fingerprint = _design_source(design, name)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.export-", dir=out_dir.parent))
    try:
        staging.chmod(0o755)
        weights_path = _stage_weights(weights, staging)
        vocab_size, d_model, n_block, dtype = _shapes(weights_path)
        facts = write_tokenizer(tokenizer, staging)
        if facts["vocab_size"] > vocab_size:
            raise ExportError(f"tokenizer {facts['name']!r} has {facts['vocab_size']} ids but the model only "
                              f"{vocab_size}: export it with the tokenizer it was trained with")
        model_type = f"genesys_{_slug(name)}"
        sizes = {"d_model": d_model, "n_block": n_block, "vocab_size": vocab_size,
                 "overrides": dict(overrides or {})}
        converted = _convert_in_sandbox(source, name, weights_path, staging, sizes, timeout_s)
        _write_code_and_config(staging, source, name, fingerprint, model_type, sizes, dtype, facts)
        result = ExportResult(out_dir, model_type, d_model, n_block, vocab_size, facts["name"], converted["params"])
        if verify:
            result.check = verify_export(staging, source, weights_path, prompt=prompt, tokenizer=tokenizer,
                                         timeout_s=timeout_s)
        weights_path.unlink()
        _replace_dir(staging, out_dir)
        return result
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@dataclass
class TrainedWeights:
    """Where a verification left a design's trained weights, and the data it was trained on."""

    path: Path  # the run's final/ folder (model.safetensors, config.json)
    rung: str  # "LADDER/RUNG"
    seed: int
    tokenizer: str  # the rung's tokenizer spec: "byte", "bpe:4096", ...
    corpus: str


def find_trained_weights(archive, run_dir: str | os.PathLike, design: str) -> TrainedWeights:
    """The weights of `design`'s verification on its highest rung that kept them.

    Verifications train into RUN_DIR/verify/NAME/LADDER-RUNG/seedN (verifier.verify);
    synthetic rungs keep no weights.
    """
    from verifier.ladder import LadderError, get_ladder

    found = []
    for v in archive.verifications(design=design):
        ladder, _, rung = v.rung.partition("/")
        folder = Path(run_dir) / "verify" / design / f"{ladder}-{rung}" / f"seed{v.seed}" / "final"
        if not (folder / WEIGHTS_FILE).is_file():
            continue
        try:
            height = [r.name for r in get_ladder(ladder)].index(rung)
        except (LadderError, ValueError):
            height = -1
        trained = TrainedWeights(folder, v.rung, v.seed, str(v.config.get("tokenizer", "byte")),
                                 str(v.config.get("corpus", "stdlib")))
        found.append((height, v.created_at, trained))
    if not found:
        raise ExportError(f"design {design!r} has no trained weights in {run_dir}: verify it on a language-"
                          f"modeling rung first (python cli.py verify {design} --rung lm-xs)")
    return max(found, key=lambda item: item[:2])[2]


def export_design(design: str, out_dir: str | os.PathLike, run_dir: str | os.PathLike, **options) -> ExportResult:
    """Export a design of a run by name: its tree, its highest-rung trained weights, that rung's tokenizer.

    `options` go to `export_hf` (overwrite, verify, prompt, timeout_s).
    """
    from designs.catalog import open_archive, resolve
    from verifier.data.tokenizers import TokenizerError, load_tokenizer

    with open_archive(run_dir) as archive:
        tree = resolve(design, archive)
        trained = find_trained_weights(archive, run_dir, design)
    from verifier.data.corpus import CorpusError, load_corpus

    try:
        corpus = load_corpus(trained.corpus) if trained.tokenizer.startswith("bpe") else None
        tokenizer = load_tokenizer(trained.tokenizer, corpus=corpus)
    except (TokenizerError, CorpusError) as exc:
        raise ExportError(f"the tokenizer of {trained.rung} cannot be loaded: {exc}") from None
    return export_hf(tree, trained.path, tokenizer, out_dir, name=design, **options)


def _stage_weights(weights, staging: Path) -> Path:
    """The weights copied (or a state_dict written) into the staging folder.

    A copy, because the sandbox runs as its own uid and the trainer's weights are
    private to the uid of the sandbox that wrote them.
    """
    path = staging / _SOURCE_WEIGHTS
    if isinstance(weights, (str, os.PathLike)):
        shutil.copyfile(_weights_file(weights), path)
        path.chmod(0o644)
        return path
    if not hasattr(weights, "items"):
        raise ExportError(f"weights must be a path or a state_dict, not {type(weights).__name__}")
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in weights.items() if k != "lm_head.weight"}
    if "embedding.weight" not in tensors and "lm_head.weight" in weights:
        tensors["embedding.weight"] = weights["lm_head.weight"].detach().cpu().contiguous().clone()
    save_file(tensors, str(path))
    path.chmod(0o644)
    return path


def _write_code_and_config(out: Path, source: str, name: str, fingerprint: str, model_type: str, sizes: dict,
                           dtype: str, tokenizer: dict) -> None:
    (out / DESIGN_FILE).write_text(source, encoding="utf-8")
    (out / CONFIG_CODE_FILE).write_text(_CONFIG_CODE.format(name=name, model_type=model_type), encoding="utf-8")
    (out / MODELING_FILE).write_text(_MODELING_CODE.format(name=name), encoding="utf-8")
    eos = tokenizer["eos_id"]
    config = {
        "model_type": model_type,
        "architectures": ["GenesysForCausalLM"],
        "auto_map": {"AutoConfig": "configuration_genesys.GenesysConfig",
                     "AutoModelForCausalLM": "modeling_genesys.GenesysForCausalLM"},
        "d_model": sizes["d_model"], "n_block": sizes["n_block"], "vocab_size": sizes["vocab_size"],
        "design_overrides": sizes["overrides"], "design_name": name, "design_fingerprint": fingerprint,
        "tie_word_embeddings": True, "use_cache": False, "dtype": dtype,
        "bos_token_id": eos, "eos_token_id": eos, "pad_token_id": eos,
        "genesys_tokenizer": tokenizer,
    }
    generation = {"bos_token_id": eos, "eos_token_id": eos, "pad_token_id": eos, "use_cache": False}
    for file, data in (("config.json", config), ("generation_config.json", generation)):
        (out / file).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def _replace_dir(staging: Path, out_dir: Path) -> None:
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        os.rename(out_dir, old)
        os.rename(staging, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(staging, out_dir)


# ---------------------------------------------------------------- sandbox jobs


def _limits(weights: Path, timeout_s: float):
    from verifier.sandbox import Limits

    mb = weights.stat().st_size >> 20
    return Limits(timeout_s=timeout_s, memory_mb=max(8192, 8 * mb + 4096), file_size_mb=max(64, 2 * mb + 64),
                  workdir_mb=max(512, 2 * mb + 256))


def _run(call: str, kwargs: dict, *, name: str, limits, output_dir=None, read_paths=()) -> dict:
    from verifier.sandbox import run_job

    env = {"HF_HOME": "/tmp/work/hf", "HF_MODULES_CACHE": "/tmp/work/hf/modules", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_VERBOSITY": "error"}
    result = run_job("exec", f"from designs.hf_export import {call}\n", name=name,
                     args={"call": call, "kwargs": kwargs}, limits=limits, output_dir=output_dir,
                     read_paths=list(read_paths), env=env)
    if not result.ok:
        raise ExportError(f"{call.replace('_', ' ')} of {name} failed in the sandbox: {result.summary()}")

    return result.payload["value"]


@contextmanager
def _readable_copy(weights):
    """The weights file where the sandbox's uid may read it (a private copy unless others may already)."""
    if weights is None:
        yield None
        return
    path = _weights_file(weights)
    if path.stat().st_mode & 0o004:
        yield path
        return
    folder = Path(tempfile.mkdtemp(prefix="genesys-export-"))
    try:
        folder.chmod(0o755)
        copy = folder / WEIGHTS_FILE
        shutil.copyfile(path, copy)
        copy.chmod(0o644)
        yield copy
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _convert_in_sandbox(source: str, name: str, weights: Path, staging: Path, sizes: dict,
                        timeout_s: float) -> dict:
    kwargs = {"design_source": source, "weights": f"/tmp/out/{weights.name}", "out_file": f"/tmp/out/{WEIGHTS_FILE}",
              **sizes}
    try:
        return _run("convert_weights", kwargs, name=name, limits=_limits(weights, timeout_s), output_dir=staging)
    finally:
        _reclaim(staging)


def _reclaim(folder: Path) -> None:
    """Give what the sandbox's uid wrote back to this process's user, readable by all like the rest."""
    for path in [folder, *folder.iterdir()]:
        if os.geteuid() == 0 and path.stat().st_uid != 0:
            os.chown(path, 0, 0)
        path.chmod(0o755 if path.is_dir() else 0o644)


def verify_export(out_dir: str | os.PathLike, design_source: str | None = None, weights=None, *,
                  prompt: str = DEFAULT_PROMPT, max_new_tokens: int = 8, tokenizer=None,
                  timeout_s: float = 600.0) -> dict:
    """Load an export with transformers in the sandbox, generate, and compare with the original model.

    The original is `design_source` (default: the export's own genesys_design.py) built
    and loaded from `weights` (default: the export's weights, renamed back). The report:
    max_abs_logit_diff (0.0 when the export is exact), generated and reference greedy
    ids (they must agree), the decoded text, the prompt's ids under AutoTokenizer
    (checked against `tokenizer` when given). Raises ExportError when the export does
    not load, does not generate, or its logits differ.
    """
    out_dir = Path(out_dir).resolve()
    try:
        config = json.loads((out_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ExportError(f"{out_dir} is not an export: config.json unreadable ({exc})") from None
    source = design_source or (out_dir / DESIGN_FILE).read_text(encoding="utf-8")
    kwargs = {"export_dir": str(out_dir), "design_source": source, "prompt": prompt,
              "max_new_tokens": max_new_tokens, "d_model": config["d_model"], "n_block": config["n_block"],
              "vocab_size": config["vocab_size"], "overrides": config.get("design_overrides") or {}}
    with _readable_copy(weights) as weights_path:
        kwargs["weights"] = str(weights_path) if weights_path else None
        reads = [out_dir] + ([weights_path] if weights_path else [])
        report = _run("check_export", kwargs, name=config.get("design_name", "design"),
                      limits=_limits(out_dir / WEIGHTS_FILE, timeout_s), read_paths=reads)
    problems = []
    if report["max_abs_logit_diff"] > 1e-5:
        problems.append(f"logits differ from the original model by up to {report['max_abs_logit_diff']:.3g}")
    if report["generated"] != report["reference_greedy"]:
        problems.append("greedy generation differs from the original model's")
    if len(report["generated"]) != len(report["prompt_ids"]) + max_new_tokens:
        problems.append(f"generate gave {len(report['generated']) - len(report['prompt_ids'])} new tokens, "
                        f"not {max_new_tokens}")
    if tokenizer is not None:
        expected = _resolve_tokenizer(tokenizer).encode(prompt)
        report["tokenizer_matches"] = report["prompt_ids"] == expected
        if not report["tokenizer_matches"]:
            problems.append("AutoTokenizer encodes the prompt differently from the Genesys tokenizer")
    if problems:
        raise ExportError(f"the export at {out_dir} is wrong: " + "; ".join(problems))
    return report


# ---------------------------------------------------------------- inside the sandbox


def _build(design_source: str, d_model: int, n_block: int, vocab_size: int, overrides: dict):
    from designs.loader import load_source

    module = load_source(design_source, "export")
    return module.build_model(d_model=d_model, n_block=n_block, vocab_size=vocab_size, **overrides)


def convert_weights(design_source: str, weights: str, out_file: str, d_model: int, n_block: int, vocab_size: int,
                    overrides: dict) -> dict:
    """(Sandbox) The trained weights with every buffer, under the wrapper's `model.` prefix."""
    from safetensors.torch import load_model, save_file

    model = _build(design_source, d_model, n_block, vocab_size, overrides)
    missing, unexpected = load_model(model, weights, strict=False)
    if missing or unexpected:
        raise ValueError(f"the weights do not fit the design at d_model={d_model}, n_block={n_block}: "
                         f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}")
    buffers = sorted(f"{prefix}.{b}".lstrip(".") for prefix, m in model.named_modules()
                     for b in m._non_persistent_buffers_set)
    for module in model.modules():
        module._non_persistent_buffers_set.clear()
    state = {f"model.{k}": v.detach().contiguous().clone() for k, v in model.state_dict().items()
             if k != "lm_head.weight"}
    save_file(state, out_file, metadata={"format": "pt"})
    return {"tensors": len(state), "params": model.num_params(non_embedding=False),
            "non_persistent_buffers": buffers}


def check_export(export_dir: str, design_source: str, weights: str | None, prompt: str, max_new_tokens: int,
                 d_model: int, n_block: int, vocab_size: int, overrides: dict) -> dict:
    """(Sandbox) Load the export with transformers, generate greedily, compare with the original DesignLM."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf = AutoModelForCausalLM.from_pretrained(export_dir, trust_remote_code=True).eval()
    tok = AutoTokenizer.from_pretrained(export_dir)
    ids = tok(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    reference = _build(design_source, d_model, n_block, vocab_size, overrides).eval()
    _load_reference(reference, weights, export_dir)
    with torch.no_grad():
        diff = (hf(ids).logits - reference(ids)).abs().max().item()
        generated = hf.generate(ids, max_new_tokens=max_new_tokens, do_sample=False)[0].tolist()
        greedy = ids
        for _ in range(max_new_tokens):
            greedy = torch.cat([greedy, reference(greedy)[:, -1:].argmax(-1)], dim=1)
    return {"max_abs_logit_diff": diff, "prompt_ids": ids[0].tolist(), "generated": generated,
            "reference_greedy": greedy[0].tolist(), "text": tok.decode(generated),
            "model_class": type(hf).__name__, "tokenizer_class": type(tok).__name__,
            "params": sum(p.numel() for p in hf.parameters())}


def _load_reference(model, weights: str | None, export_dir: str) -> None:
    """The original weights, or the export's own with the `model.` prefix taken off."""
    from safetensors.torch import load_file, load_model

    if weights is not None:
        load_model(model, weights, strict=True)
        return
    state = {k.removeprefix("model."): v for k, v in load_file(str(Path(export_dir) / WEIGHTS_FILE)).items()}
    model.load_state_dict(state, strict=False)


__all__ = ["ExportError", "ExportResult", "TrainedWeights", "export_design", "export_hf", "find_trained_weights",
           "verify_export", "write_tokenizer"]
