"""The trainer (verifier/train.py): schedule, accumulation, OOM back-off, divergence stop,
checkpoints and a resume after SIGKILL that is bit-exact, and the sandbox "train" entry.

Tiny runs of the GPT-2 seed (d_model 32, 2 blocks, seq 32) on a small byte corpus; the
seed is trusted code, so most runs are in-process. GENESYS_PEAK_FLOPS is set so runs
skip the CPU matmul measurement (test_cpu_peak_flops measures one, small).
"""

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, load_model

from designs.loader import load_source
from designs.seeds import load_seed
from verifier.data.corpus import TokenShards, load_corpus, pretokenize
from verifier.data.tokenizers import load_tokenizer
from verifier.sandbox import Limits, run_job
from verifier.train import (KILL_ENV, PEAK_ENV, TRAIN_LOG, Checkpoints, TokenArray, TrainConfig, cpu_peak_flops,
                            gpu_peak_flops, lr_factor, param_groups, step_batch, train)

ROOT = Path(__file__).resolve().parents[1]
# compile off: on a CUDA machine "auto" would compile, and compiled kernels are not bit-exact with eager
TINY = dict(d_model=32, n_block=2, seq_len=32, batch_size=4, lr=3e-3, log_every=4, compile="off")


@pytest.fixture(autouse=True)
def _no_peak_measurement(monkeypatch):
    monkeypatch.setenv(PEAK_ENV, "1e11")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models gain nothing from a second thread, and on a busy machine lose a lot to it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def source() -> str:
    return load_seed("gpt2").compose(include_tests=False)


@pytest.fixture(scope="module")
def gpt2(source):
    return load_source(source, "gpt2")


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> TokenShards:
    """A small corpus of this project's own text files, byte-tokenized into cached shards."""
    root = tmp_path_factory.mktemp("corpus")
    for path in ("designs/lm.py", "designs/gau.py", "verifier/sandbox.py", "README.md"):
        (root / Path(path).name).with_suffix(".txt").write_bytes((ROOT / path).read_bytes())
    corpus = load_corpus(str(root))
    return pretokenize(corpus, "train", load_tokenizer("byte"), cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def tokens() -> TokenArray:
    return TokenArray(list((ROOT / "designs" / "gau.py").read_bytes()))


def config(steps: int, **kw) -> TrainConfig:
    values = {**TINY, **kw}
    return TrainConfig(max_tokens=steps * values["batch_size"] * values["seq_len"], **values)


def build(gpt2, seed: int = 0):
    torch.manual_seed(seed)
    return gpt2.build_model(d_model=32, n_block=2, vocab_size=256)


class Injected(torch.nn.Module):
    """A trusted model whose loss fails like a real OOM above `limit` rows, or turns NaN at call `nan_at`."""

    def __init__(self, inner, limit: int = 1 << 30, nan_at: int | None = None):
        super().__init__()
        self.inner, self.limit, self.nan_at, self.calls = inner, limit, nan_at, 0
        self.config = inner.config

    def loss(self, tokens):
        if tokens.shape[0] > self.limit:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (injected by the test)")
        self.calls += 1
        loss = self.inner.loss(tokens)
        return loss * float("nan") if self.calls == self.nan_at else loss


def losses(result) -> list[float]:
    return [e["loss"] for e in result.log if "event" not in e]


# ---------------------------------------------------------------- pieces


def test_lr_schedule_warms_up_then_cosine_to_the_minimum():
    total, warmup, lo = 100, 10, 0.1
    f = [lr_factor(s, total, warmup, lo) for s in range(total)]
    assert f[0] == pytest.approx(0.1) and f[warmup - 1] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(f[:warmup], f[1:warmup]))  # linear rise
    assert f[warmup] == pytest.approx(1.0) and f[-1] == pytest.approx(lo)
    assert all(a >= b for a, b in zip(f[warmup:], f[warmup + 1:]))  # cosine fall
    mid = warmup + (total - 1 - warmup) // 2
    assert f[mid] == pytest.approx(lo + (1 - lo) / 2, abs=0.02)
    assert lr_factor(0, 5, 0, 0.5) == 1.0  # no warmup: starts at the peak
    assert TrainConfig(32, 2, max_tokens=40 * 16 * 256).warmup == 2  # 5% of 40 steps


def test_param_groups_decay_only_matrices(gpt2):
    model = build(gpt2)
    decay, plain = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert all(p.ndim >= 2 and "norm" not in names[id(p)] for p in decay["params"])
    assert any(names[id(p)].endswith("bias") for p in plain["params"])
    assert len(decay["params"]) + len(plain["params"]) == len(list(model.parameters()))


def test_data_order_depends_only_on_seed_and_step(tokens):
    a = step_batch(tokens, 4, 16, seed=0, step=5)
    assert torch.equal(a, step_batch(tokens, 4, 16, seed=0, step=5))
    assert not torch.equal(a, step_batch(tokens, 4, 16, seed=0, step=6))
    assert not torch.equal(a, step_batch(tokens, 4, 16, seed=1, step=5))
    assert a.shape == (4, 17) and a.dtype == torch.long


def test_peak_flops():
    assert cpu_peak_flops(n=256, repeats=1) > 1e8
    assert gpu_peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert gpu_peak_flops("NVIDIA H100 PCIe") == 756e12
    assert gpu_peak_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert gpu_peak_flops("NVIDIA A10") == 125e12 and gpu_peak_flops("NVIDIA A10G") is None
    assert gpu_peak_flops("NVIDIA L40S") == 362e12 and gpu_peak_flops("Some Future GPU") is None


def test_config_round_trip_and_validation():
    cfg = config(10, micro_batch_size=2, betas=(0.8, 0.9))
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="unknown keys"):
        TrainConfig.from_dict({**cfg.to_dict(), "lr_typo": 1})
    with pytest.raises(ValueError, match="must divide"):
        config(10, micro_batch_size=3).validate()
    with pytest.raises(ValueError, match="less than one step"):
        TrainConfig(32, 2, max_tokens=10).validate()


# ---------------------------------------------------------------- runs


def test_run_writes_log_checkpoints_and_final_weights(source, gpt2, shards, tmp_path):
    seen = []
    cfg = config(12, checkpoint_every=4, eval_every=8, eval_batches=2)
    result = train(source, cfg, shards, tmp_path, name="gpt2", valid_data=shards, progress=seen.append)
    assert result.status == "completed" and result.steps == 12 and result.tokens == 12 * 4 * 32
    precision = "bf16" if torch.cuda.is_available() else "fp32"  # "auto": bf16 autocast on CUDA
    assert result.resumed_from is None and result.micro_batch_size == 4 and result.precision == precision
    assert result.model_flops_per_token > 0 and result.peak_flops == 1e11 and 0 < result.mfu < 1
    assert result.tokens_per_s > 0 and math.isfinite(result.final_loss)
    assert [e["step"] for e in result.log] == [4, 8, 12]
    for entry in result.log:
        assert {"step", "tokens", "loss", "grad_norm", "lr", "tokens_per_s", "mfu"} <= set(entry)
    assert "val_loss" in result.log[1] and "val_loss" in result.log[2] and "val_loss" not in result.log[0]
    assert result.val_loss == result.log[-1]["val_loss"] < math.log(256)
    assert result.final_loss == result.log[-1]["loss"] < result.log[0]["loss"]
    # the lr logged is the schedule's
    assert result.log[0]["lr"] == pytest.approx(cfg.lr * lr_factor(3, 12, cfg.warmup, cfg.min_lr_ratio))
    assert [e["step"] for e in seen] == [4, 8, 12] and seen[0]["total_steps"] == 12
    lines = [json.loads(x) for x in (tmp_path / TRAIN_LOG).read_text().splitlines()]
    assert lines == json.loads(json.dumps(result.log))
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_00000008", "step_00000012"]
    assert json.loads((tmp_path / "result.json").read_text())["status"] == "completed"
    info = json.loads((tmp_path / "final" / "config.json").read_text())
    assert info["name"] == "gpt2" and TrainConfig.from_dict(info) == cfg and info["model"]["d_model"] == 32
    fresh = build(gpt2, seed=1)
    missing, unexpected = load_model(fresh, tmp_path / "final" / "model.safetensors")
    assert not missing and not unexpected
    batch = shards.batch(2, 32, torch.Generator().manual_seed(3))
    with torch.no_grad():  # the saved weights are the trained model: same held-out loss
        assert fresh.loss(batch).item() < math.log(256)
    again = train(source, cfg, shards, tmp_path, name="gpt2")  # same out_dir: resumes at the end
    assert again.status == "completed" and again.resumed_from == 12 and again.final_loss == result.final_loss


def test_resume_after_sigkill_is_bit_exact(source, shards, tmp_path):
    """Killed (SIGKILL) right after step 13 in a child process, then run again: the same run as one
    never interrupted, bit for bit (resumed from the checkpoint at step 8)."""
    cfg = config(24, checkpoint_every=8)
    whole = train(source, cfg, shards, tmp_path / "whole", name="gpt2")
    assert whole.status == "completed"
    src_file = tmp_path / "design.py"
    src_file.write_text(source)
    script = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); import torch; torch.set_num_threads(int(sys.argv[2]))\n"
        "from pathlib import Path\n"
        "from verifier.data.corpus import TokenShards\n"
        "from verifier.train import TrainConfig, train\n"
        "train(Path(sys.argv[3]).read_text(), TrainConfig.from_dict(json.loads(sys.argv[4])),"
        " TokenShards(sys.argv[5]), Path(sys.argv[6]), name='gpt2')\n"
    )
    argv = [sys.executable, "-c", script, str(ROOT), str(torch.get_num_threads()), str(src_file),
            json.dumps(cfg.to_dict()), str(shards.path), str(tmp_path / "killed")]
    killed = subprocess.run(argv, env={**os.environ, KILL_ENV: "13"}, capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9, killed.stderr[-2000:]
    log = [json.loads(x) for x in (tmp_path / "killed" / TRAIN_LOG).read_text().splitlines()]
    assert [e["step"] for e in log] == [4, 8, 12]  # it got past the checkpoint at 8 before dying
    assert not (tmp_path / "killed" / "final").exists()
    resumed = train(source, cfg, TokenShards(shards.path), tmp_path / "killed", name="gpt2")
    assert resumed.status == "completed" and resumed.resumed_from == 8
    assert resumed.final_loss == whole.final_loss
    assert losses(resumed) == losses(whole)
    assert [e["step"] for e in resumed.log] == [4, 8, 12, 16, 20, 24]  # no step logged twice
    lines = [json.loads(x) for x in (tmp_path / "killed" / TRAIN_LOG).read_text().splitlines()]
    assert [e["step"] for e in lines] == [4, 8, 12, 16, 20, 24]
    # the clock goes on across the kill: the killed call's time up to its checkpoint counts
    elapsed = [e["elapsed_s"] for e in lines]
    assert elapsed == sorted(elapsed) and 0 < elapsed[1] <= resumed.prior_s < elapsed[2]
    assert resumed.prior_s <= log[2]["elapsed_s"]  # the killed call's step-12 line came after it
    a = load_file(tmp_path / "whole" / "final" / "model.safetensors")
    b = load_file(tmp_path / "killed" / "final" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_failing_compile_falls_back_to_eager_and_auto_is_eager_on_cpu(gpt2, tokens, tmp_path, monkeypatch):
    eager = train(build(gpt2), config(4, log_every=1, checkpoint_every=0), tokens, tmp_path / "eager")

    def broken_compile(fn):
        def compiled(*args, **kwargs):
            raise RuntimeError("BackendCompilerFailed: backend='inductor' raised: no C++ compiler")
        return compiled

    monkeypatch.setattr(torch, "compile", broken_compile)
    forced = train(build(gpt2), config(4, log_every=1, checkpoint_every=0, compile="on"), tokens, tmp_path / "forced")
    events = [e for e in forced.log if e.get("event") in ("compile_failed", "compiled")]
    assert len(events) == 1 and events[0]["step"] == 1 and "no C++ compiler" in events[0]["error"]
    assert forced.status == "completed" and losses(forced) == losses(eager)  # the same steps, eager
    assert forced.tokens_per_s > 0
    if not torch.cuda.is_available():  # "auto" compiles on one CUDA device only
        auto = train(build(gpt2), config(4, log_every=1, checkpoint_every=0, compile="auto"), tokens,
                     tmp_path / "auto")
        assert not [e for e in auto.log if e.get("event")] and losses(auto) == losses(eager)


def test_the_compiling_step_is_left_out_of_throughput(gpt2, tokens, tmp_path, monkeypatch):
    def slow_first_call(fn):
        calls = []

        def compiled(*args, **kwargs):
            if not calls:
                time.sleep(3.0)  # what compiling costs, once
            calls.append(1)
            return fn(*args, **kwargs)
        return compiled

    monkeypatch.setattr(torch, "compile", slow_first_call)
    result = train(build(gpt2), config(6, log_every=3, checkpoint_every=0, compile="on"), tokens, tmp_path)
    compiled = [e for e in result.log if e.get("event") == "compiled"]
    assert len(compiled) == 1 and compiled[0]["step"] == 1 and compiled[0]["seconds"] >= 3.0
    window = [e for e in result.log if "event" not in e]
    assert result.status == "completed" and len(window) == 2
    # counted with the compiling step, 6 steps of 128 tokens would be under 768 / 3 = 256 tokens/s
    assert result.tokens_per_s > 1000 and window[0]["tokens_per_s"] > 1000
    with pytest.raises(ValueError, match="compile must be auto, on or off"):
        config(4, compile="yes").validate()


def test_gradient_accumulation_matches_the_full_batch(source, tokens, tmp_path):
    # fp32 also on a GPU: under bf16 autocast the two summation orders differ by ~1e-3
    full = train(source, config(6, batch_size=8, log_every=1, checkpoint_every=0, precision="fp32"), tokens,
                 tmp_path / "a")
    accum = train(source, config(6, batch_size=8, micro_batch_size=2, log_every=1, checkpoint_every=0,
                                 precision="fp32"), tokens, tmp_path / "b")
    assert accum.micro_batch_size == 2 and full.micro_batch_size == 8
    torch.testing.assert_close(torch.tensor(losses(accum)), torch.tensor(losses(full)), rtol=1e-5, atol=1e-5)
    a = load_file(tmp_path / "a" / "final" / "model.safetensors")
    b = load_file(tmp_path / "b" / "final" / "model.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)


def test_oom_backoff_halves_the_micro_batch_and_redoes_the_step(gpt2, tokens, tmp_path):
    cfg = config(4, batch_size=8, log_every=2, checkpoint_every=0)
    backed_off = train(Injected(build(gpt2), limit=2), cfg, tokens, tmp_path / "oom")
    direct = train(Injected(build(gpt2)), config(4, batch_size=8, micro_batch_size=2, log_every=2,
                                                  checkpoint_every=0), tokens, tmp_path / "direct")
    assert backed_off.status == "completed" and backed_off.micro_batch_size == 2
    events = [e for e in backed_off.log if e.get("event") == "oom_backoff"]
    assert [(e["step"], e["previous_micro_batch_size"], e["micro_batch_size"]) for e in events] == [(1, 8, 4), (1, 4, 2)]
    assert "out of memory" in events[0]["error"]
    assert losses(backed_off) == losses(direct)  # same micro-batches, same order: identical
    a = load_file(tmp_path / "oom" / "final" / "model.safetensors")
    b = load_file(tmp_path / "direct" / "final" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_oom_at_micro_batch_one_stops(gpt2, tokens, tmp_path):
    result = train(Injected(build(gpt2), limit=0), config(4, checkpoint_every=0), tokens, tmp_path)
    assert result.status == "stopped" and result.steps == 0
    assert result.reason.startswith("out of memory at micro-batch 1")
    assert not (tmp_path / "final").exists() and (tmp_path / "result.json").exists()


def test_nan_loss_diverges_with_the_step(gpt2, tokens, tmp_path):
    # call 1 of the loss is the FLOPs measurement before training: call 4 is step 3's
    result = train(Injected(build(gpt2), nan_at=4), config(8, log_every=1), tokens, tmp_path)
    assert result.status == "diverged" and result.steps == 2 and "step 3" in result.reason
    assert "nan" in result.reason and math.isnan(result.final_loss)
    assert result.log[-1]["event"] == "diverged" and result.log[-1]["step"] == 3
    assert not (tmp_path / "final").exists()


def test_loss_above_the_bound_diverges_after_warmup(source, tokens, tmp_path):
    result = train(source, config(8, warmup_steps=2, divergence_loss=1.0), tokens, tmp_path)
    assert result.status == "diverged" and result.steps == 2  # steps 1-2 are warmup: not checked
    assert "step 3" in result.reason and "divergence bound" in result.reason


def test_leftover_tmp_and_damaged_checkpoints_are_ignored(source, tokens, tmp_path):
    cfg = config(8, checkpoint_every=4)
    first = train(source, cfg, tokens, tmp_path)
    ckpt = tmp_path / "checkpoints"
    (ckpt / "step_00000008" / "state.pt").write_bytes(b"torn")  # damaged newest checkpoint
    leftover = ckpt / ".tmp-step_00000012-999-abc"
    leftover.mkdir()
    (leftover / "state.pt").write_bytes(b"half written")
    (ckpt / "step_00000010").mkdir()  # a folder without meta.json is no checkpoint
    assert [s for s, _, _ in Checkpoints(tmp_path).complete()] == [8, 4]
    again = train(source, cfg, tokens, tmp_path)
    assert again.resumed_from == 4 and again.final_loss == first.final_loss
    assert not leftover.exists()
    other = train(source, config(8, checkpoint_every=4, lr=1e-3), tokens, tmp_path)  # another fingerprint
    assert other.resumed_from is None and other.final_loss != first.final_loss


def test_sandbox_train_entry(source, tmp_path):
    text = (ROOT / "verifier" / "sandbox.py").read_bytes()
    assert len(text) > 8000
    cfg = config(6, checkpoint_every=3, eval_batches=2)
    result = run_job("train", source, name="gpt2", output_dir=tmp_path / "out",
                     args={"config": cfg.to_dict(), "train_tokens": list(text[:6000]),
                           "valid_tokens": list(text[6000:8000])},
                     limits=Limits(timeout_s=120, threads=1), env={PEAK_ENV: "1e11"})
    assert result.ok, result.summary() + result.stderr[-2000:]
    payload = result.payload
    assert payload["status"] == "completed" and payload["steps"] == 6 and payload["val_loss"] > 0
    assert payload["out_dir"] == "/tmp/out"
    assert (tmp_path / "out" / "final" / "model.safetensors").exists()
    assert len((tmp_path / "out" / TRAIN_LOG).read_text().splitlines()) == len(payload["log"])
