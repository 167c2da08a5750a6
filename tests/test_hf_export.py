"""Hugging Face export: the directory loads with AutoModelForCausalLM (in the sandbox), generates, and
gives the trained DesignLM's logits; tokenizers load with AutoTokenizer and encode as Genesys does."""

import json

import pytest
import torch
from safetensors import safe_open

from designs.catalog import open_archive
from verifier.hf_export import (
    ExportError,
    export_design,
    export_hf,
    find_trained_weights,
    write_tokenizer,
)
from designs.model import load_design_module
from designs.seeds import load_seed
from verifier.data.tokenizers import EOT_TOKEN, ByteTokenizer, TokenizersTokenizer
from verifier.train import TokenArray, TrainConfig, train

TEXTS = ["def main():\n    return 0\n", "café € 😀 naïve", "a\x00b", "Ā is the symbol of byte 0", "  spaces\ttabs\n"]
CORPUS = "".join(f"def f{i}(x):\n    return x * {i} + {i % 7}\n\nclass C{i}:\n    pass\n" for i in range(200))


def bpe_tokenizer(vocab_size=300) -> TokenizersTokenizer:
    """A small byte-level BPE built the way verifier.data.tokenizers.train_bpe builds it."""
    import tokenizers as tk

    tok = tk.Tokenizer(tk.models.BPE())
    tok.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tk.decoders.ByteLevel()
    trainer = tk.trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=[EOT_TOKEN],
                                     initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([CORPUS], trainer)
    return TokenizersTokenizer(tok, f"bpe:{vocab_size}")


def keys(path) -> list[str]:
    with safe_open(str(path), framework="pt") as f:
        return list(f.keys())


# ---------------------------------------------------------------- tokenizers (no design code)


def test_byte_tokenizer_loads_with_autotokenizer_and_gives_byte_ids(tmp_path):
    from transformers import AutoTokenizer

    facts = write_tokenizer(ByteTokenizer(), tmp_path)
    assert facts == {"name": "byte", "vocab_size": 256, "eos_id": 0, "fingerprint": ByteTokenizer.fingerprint}
    tok = AutoTokenizer.from_pretrained(tmp_path)
    assert len(tok) == 256
    for text in TEXTS:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert ids == ByteTokenizer().encode(text)
        assert tok.decode(ids) == text


def test_bpe_tokenizer_loads_with_autotokenizer_and_encodes_the_same(tmp_path):
    from transformers import AutoTokenizer

    bpe = bpe_tokenizer()
    write_tokenizer(bpe, tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    assert tok.eos_token == EOT_TOKEN and tok.eos_token_id == bpe.eos_id == 0
    for text in TEXTS + [CORPUS[:300], f"x{EOT_TOKEN}y"]:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert ids == bpe.encode(text)
        assert tok.decode(ids) == bpe.decode(ids)


# ---------------------------------------------------------------- models, checked in the sandbox


def trained_gpt2(folder, steps=3):
    """A tiny GPT-2 seed trained a few steps by the real trainer: folder/final/ as a verification leaves it."""
    torch.manual_seed(0)
    model = load_design_module(load_seed("gpt2")).build_model(d_model=32, n_block=2, vocab_size=256)
    config = TrainConfig(d_model=32, n_block=2, seq_len=32, batch_size=4, max_tokens=4 * 32 * steps, lr=3e-3,
                         log_every=1, checkpoint_every=0)
    result = train(model, config, TokenArray(list(CORPUS.encode()), 256), folder, name="gpt2")
    assert result.status == "completed" and result.steps == steps
    return model


def test_export_of_a_trained_gpt2_loads_generates_and_matches_the_original(tmp_path, monkeypatch):
    monkeypatch.setenv("GENESYS_PEAK_FLOPS", "1e12")  # skip the trainer's peak measurement
    run_dir = tmp_path / "run"
    with open_archive(run_dir) as archive:
        archive.record_verification("gpt2", rung="cpu/lm-xs", seed=0, corpus_fp="c", tokenizer_fp="t",
                                    metrics={"bpb": 3.0}, wall_time_s=1.0,
                                    config={"tokenizer": "byte", "corpus": "stdlib"})
        trained_gpt2(run_dir / "verify" / "gpt2" / "cpu-lm-xs" / "seed0")
        found = find_trained_weights(archive, run_dir, "gpt2")
    assert (found.rung, found.seed, found.tokenizer) == ("cpu/lm-xs", 0, "byte")

    out = tmp_path / "export"
    result = export_design("gpt2", out, run_dir)
    check = result.check
    assert check["max_abs_logit_diff"] == 0.0
    assert check["generated"] == check["reference_greedy"]
    assert len(check["generated"]) == len(check["prompt_ids"]) + 8
    assert check["tokenizer_matches"] and check["model_class"] == "GenesysForCausalLM"
    assert check["params"] == result.params
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "genesys_gpt2" and config["design_name"] == "gpt2"
    assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_genesys.GenesysForCausalLM"
    assert (config["d_model"], config["n_block"], config["vocab_size"], config["eos_token_id"]) == (32, 2, 256, 0)
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json", "configuration_genesys.py", "generation_config.json", "genesys_design.py",
        "model.safetensors", "modeling_genesys.py", "tokenizer.json", "tokenizer_config.json"]
    names = keys(out / "model.safetensors")
    assert all(k.startswith("model.") for k in names) and "model.lm_head.weight" not in names
    # self-contained: the modeling code imports neither genesys nor its packages
    for file in ("modeling_genesys.py", "configuration_genesys.py", "genesys_design.py"):
        code = (out / file).read_text()
        assert "import designs" not in code and "from designs" not in code and "verifier" not in code
    assert not list(tmp_path.glob(".export*"))  # no staging folder left behind


def test_export_of_a_recurrent_seed_with_bpe_from_a_state_dict(tmp_path):
    bpe = bpe_tokenizer()
    tree = load_seed("retnet")  # its decay rates are non-persistent buffers: they must travel too
    torch.manual_seed(0)
    model = load_design_module(tree).build_model(d_model=32, n_block=2, vocab_size=bpe.vocab_size)
    out = tmp_path / "retnet-hf"
    result = export_hf(tree, model.state_dict(), bpe, out, prompt="class C3:\n")
    assert result.check["max_abs_logit_diff"] == 0.0 and result.check["tokenizer_matches"]
    assert result.check["generated"] == result.check["reference_greedy"]
    assert result.tokenizer == "bpe:300" and result.vocab_size == bpe.vocab_size
    assert "model.blocks.0.retention.log_gamma" in keys(out / "model.safetensors")
    assert json.loads((out / "tokenizer_config.json").read_text())["eos_token"] == EOT_TOKEN


# ---------------------------------------------------------------- bad input


def test_bad_input_gives_clear_errors_and_leaves_nothing_behind(tmp_path):
    gpt2 = load_seed("gpt2")
    model = load_design_module(gpt2).build_model(d_model=32, n_block=2, vocab_size=256)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    with pytest.raises(ExportError, match="not empty"):
        export_hf(gpt2, model.state_dict(), "byte", tmp_path / "taken")
    with pytest.raises(ExportError, match="no weights at"):
        export_hf(gpt2, tmp_path / "nowhere", "byte", tmp_path / "a")
    with pytest.raises(ExportError, match="defines build_model"):
        export_hf("print('hello')", model.state_dict(), "byte", tmp_path / "b")
    with pytest.raises(ExportError, match="trained on a corpus"):
        export_hf(gpt2, model.state_dict(), "bpe:4096", tmp_path / "c")
    small = load_design_module(gpt2).build_model(d_model=32, n_block=2, vocab_size=200)
    with pytest.raises(ExportError, match="has 256 ids but the model only 200"):
        export_hf(gpt2, small.state_dict(), "byte", tmp_path / "d")
    with pytest.raises(ExportError, match="weights do not fit the design"):  # GPT-2 weights, Llama's code
        export_hf(load_seed("llama"), model.state_dict(), "byte", tmp_path / "e")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
    with open_archive(tmp_path / "run") as archive:
        with pytest.raises(ExportError, match="no trained weights"):
            find_trained_weights(archive, tmp_path / "run", "gpt2")
