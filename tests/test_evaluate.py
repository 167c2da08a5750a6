"""Evaluation: validation loss and bits per byte, synthetic accuracy, checkpoints,
the genesys lm-eval model, the offline continuation task, and the CLI wrapper."""

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from designs.loader import load_source
from designs.seeds import load_seed
from verifier.data.corpus import files_corpus, pretokenize
from verifier.data.synthetic import IGNORE, generate, task_config
from verifier.data.tokenizers import ByteTokenizer
from verifier.evaluate import (
    PAPER_TASK_DATASETS,
    PAPER_TASKS,
    EvaluationError,
    load_checkpoint,
    run_lm_eval,
    save_checkpoint,
    synthetic_accuracy,
    validation_loss,
)

ROOT = Path(__file__).resolve().parents[1]
SEQ_LEN = 64


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models: one thread is faster, and far faster on a loaded machine (two
    OpenMP threads competing with other jobs wait on each other)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def gpt2_source():
    return load_seed("gpt2").compose(include_tests=False)


@pytest.fixture(scope="module")
def tiny_model(gpt2_source):
    torch.manual_seed(0)
    return load_source(gpt2_source, "gpt2").build_model(d_model=32, n_block=2, vocab_size=256).eval()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny_model, gpt2_source):
    path = tmp_path_factory.mktemp("ckpt") / "gpt2-tiny"
    config = {"name": "gpt2", "tokenizer": "byte", "corpus": "stdlib", "seq_len": SEQ_LEN}
    return save_checkpoint(tiny_model, gpt2_source, config, path)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("genesys-cache")


@pytest.fixture(autouse=True)
def _cache_env(cache_dir, monkeypatch):
    monkeypatch.setenv("GENESYS_CACHE", str(cache_dir))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def genesys_lm(checkpoint):
    from verifier.lmeval.model import GenesysLM

    return GenesysLM(checkpoint=str(checkpoint), batch_size=3)


def _instance(kind, args):
    from lm_eval.api.instance import Instance

    return Instance(request_type=kind, doc={}, arguments=args, idx=0)


# -- validation loss ------------------------------------------------------------------


def test_validation_loss_bits_per_byte_byte_tokenizer(tmp_path, tiny_model):
    root = tmp_path / "texts"
    for i in range(6):
        (root / f"f{i}.txt").parent.mkdir(parents=True, exist_ok=True)
        (root / f"f{i}.txt").write_text(f"def f{i}(x):\n    return x * {i} + {i * i}\n" * 8)
    shards = pretokenize(files_corpus([str(root)]), "train", ByteTokenizer(), cache_dir=tmp_path / "cache")
    assert shards.bytes_per_token == 1.0
    result = validation_loss(tiny_model, shards, seq_len=SEQ_LEN, batch_size=4, max_batches=2)
    assert result["tokens"] == 2 * 4 * SEQ_LEN
    assert result["bits_per_byte"] == pytest.approx(result["loss"] / math.log(2), rel=1e-9)
    # the same windows by hand: consecutive, non-overlapping targets from the start
    data = torch.from_numpy(shards.tokens(0, 8 * SEQ_LEN + 1).astype("int64"))
    windows = torch.stack([data[s:s + SEQ_LEN + 1] for s in range(0, 8 * SEQ_LEN, SEQ_LEN)])
    with torch.no_grad():
        expected = float(tiny_model.loss(windows))
    assert result["loss"] == pytest.approx(expected, rel=1e-5)
    assert validation_loss(tiny_model, shards, seq_len=SEQ_LEN, batch_size=4, max_batches=2) == result
    # a plain token sequence gives the same numbers
    flat = validation_loss(tiny_model, data, seq_len=SEQ_LEN, batch_size=4, max_batches=2)
    assert flat["loss"] == pytest.approx(result["loss"], rel=1e-6)


def test_bits_per_byte_uses_bytes_per_token(tiny_model):
    tokens = torch.randint(0, 256, (3 * SEQ_LEN + 1,), generator=torch.Generator().manual_seed(3))
    one = validation_loss(tiny_model, tokens, seq_len=SEQ_LEN, batch_size=2)
    three = validation_loss(tiny_model, tokens, seq_len=SEQ_LEN, batch_size=2, bytes_per_token=3.0)
    assert one["tokens"] == three["tokens"] == 3 * SEQ_LEN
    assert three["loss"] == one["loss"]
    assert three["bits_per_byte"] == pytest.approx(one["loss"] / (math.log(2) * 3.0))
    with pytest.raises(EvaluationError, match="too short"):
        validation_loss(tiny_model, tokens[:10], seq_len=SEQ_LEN, batch_size=2)


# -- synthetic accuracy ---------------------------------------------------------------


class Oracle(nn.Module):
    """Knows the answers: one-hot logits of the targets of each stored input row."""

    def __init__(self, data):
        super().__init__()
        self.rows = {tuple(r.tolist()): t for r, t in zip(data.inputs, data.targets)}
        self.vocab = data.config.vocab_size
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        targets = torch.stack([self.rows[tuple(r.tolist())] for r in x]).clamp(min=0)
        return F.one_hot(targets, self.vocab).float()


class Noise(nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.vocab = vocab
        self.dummy = nn.Parameter(torch.zeros(()))
        self.gen = torch.Generator().manual_seed(0)

    def forward(self, x):
        return torch.randn(*x.shape, self.vocab, generator=self.gen)


def test_synthetic_accuracy_oracle_and_noise():
    data = generate(task_config("in_context_recall", "quick"), "test", seed=0)
    assert synthetic_accuracy(Oracle(data), data) == 1.0
    assert synthetic_accuracy(Oracle(data), data, batch_size=7) == 1.0
    assert synthetic_accuracy(Oracle(data), (data.inputs, data.targets)) == 1.0
    noise = synthetic_accuracy(Noise(data.config.vocab_size), data)
    chance = 1 / data.config.vocab_size  # a uniform guess over the vocabulary
    sigma = math.sqrt(chance * (1 - chance) / data.n_scored)
    assert abs(noise - chance) < 5 * sigma
    assert (data.targets != IGNORE).any()


# -- checkpoints ------------------------------------------------------------------------


def test_checkpoint_round_trip(checkpoint, tiny_model):
    assert sorted(p.name for p in checkpoint.iterdir()) == ["config.json", "design.py", "model.safetensors"]
    config = json.loads((checkpoint / "config.json").read_text())
    assert config == {"name": "gpt2", "d_model": 32, "n_block": 2, "vocab_size": 256, "tokenizer": "byte",
                      "corpus": "stdlib", "seq_len": SEQ_LEN}
    model, loaded_config, tokenizer = load_checkpoint(checkpoint)
    assert loaded_config == config and tokenizer.name == "byte"
    assert model.lm_head.weight is model.embedding.weight  # still tied
    x = torch.randint(0, 256, (2, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(model(x), tiny_model(x))


def test_checkpoint_without_design_file(tmp_path, checkpoint, gpt2_source, tiny_model):
    """A folder with weights and config only (tokenizer unspecified: byte), the source given."""
    (tmp_path / "model.safetensors").write_bytes((checkpoint / "model.safetensors").read_bytes())
    (tmp_path / "config.json").write_text(json.dumps({"name": "gpt2", "d_model": 32, "n_block": 2,
                                                      "vocab_size": 256, "seq_len": SEQ_LEN}))
    model, _, tokenizer = load_checkpoint(tmp_path, source=gpt2_source)
    x = torch.randint(0, 256, (1, 12))
    with torch.no_grad():
        assert torch.equal(model(x), tiny_model(x))
    assert tokenizer.name == "byte"


def test_checkpoint_missing_files(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(EvaluationError, match="missing design.py, model.safetensors"):
        load_checkpoint(tmp_path)
    with pytest.raises(EvaluationError, match="not a checkpoint"):
        run_lm_eval(tmp_path, ["genesys_continuation"])


# -- the genesys lm-eval model ----------------------------------------------------------


def _direct_logprob(model, context_ids, continuation_ids):
    tokens = torch.tensor([context_ids + continuation_ids])
    with torch.no_grad():
        logp = F.log_softmax(model(tokens[:, :-1]).float(), -1)[0]
    n = len(continuation_ids)
    rows = logp[-n:]
    target = tokens[0, -n:]
    return float(rows.gather(-1, target[:, None]).sum()), bool((rows.argmax(-1) == target).all())


def test_loglikelihood_matches_direct_computation(genesys_lm, tiny_model):
    tok = ByteTokenizer()
    requests = [("def add(a, b):\n    return", " a + b\n"), ("import os\n", "import sys\n"), ("x", "y")]
    results = genesys_lm.loglikelihood([_instance("loglikelihood", r) for r in requests], disable_tqdm=True)
    for (context, continuation), (logprob, greedy) in zip(requests, results):
        # lm-eval moves the context's trailing whitespace into the continuation
        stripped = context.rstrip()
        expected = _direct_logprob(tiny_model, tok.encode(stripped), tok.encode(context[len(stripped):] + continuation))
        assert logprob == pytest.approx(expected[0], rel=1e-5, abs=1e-4)
        assert greedy == expected[1]
    # the greedy continuation is recognised as greedy, anything else is not
    ids = tok.encode("class A:\n")
    with torch.no_grad():
        for _ in range(3):
            ids.append(int(tiny_model(torch.tensor([ids]))[0, -1].argmax()))
    context_ids, greedy_ids = ids[:-3], ids[-3:]
    other_ids = greedy_ids[:2] + [(greedy_ids[2] + 1) % 256]
    results = genesys_lm._loglikelihood_tokens(
        [(("", ""), context_ids, greedy_ids), (("", ""), context_ids, other_ids)], disable_tqdm=True)
    assert [greedy for _, greedy in results] == [True, False]
    assert results[0][0] == pytest.approx(_direct_logprob(tiny_model, context_ids, greedy_ids)[0], rel=1e-5)


def test_loglikelihood_truncates_and_windows(tiny_model):
    from verifier.lmeval.model import GenesysLM

    tok = ByteTokenizer()
    lm = GenesysLM(model=tiny_model, tokenizer=tok, max_length=16, batch_size=2)
    context, continuation = "0123456789abcdefghijklmnop", "QRSTU"
    (logprob, _), = lm.loglikelihood([_instance("loglikelihood", (context, continuation))], disable_tqdm=True)
    full = tok.encode(context + continuation)
    expected, _ = _direct_logprob(tiny_model, full[-17:-5], full[-5:])  # left-truncated to 16 inputs
    assert logprob == pytest.approx(expected, rel=1e-5, abs=1e-4)
    # a continuation longer than max_length: windows of 16 predictions, full context each
    long_cont = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"  # 26 tokens
    (logprob, _), = lm.loglikelihood([_instance("loglikelihood", ("0123456789", long_cont))], disable_tqdm=True)
    ids = tok.encode("0123456789" + long_cont)
    # by hand: targets 10..25 from inputs ids[9:25], then targets 26..35 from the 16 inputs before them
    with torch.no_grad():
        a = F.log_softmax(tiny_model(torch.tensor([ids[9:25]])).float(), -1)[0]
        b = F.log_softmax(tiny_model(torch.tensor([ids[19:35]])).float(), -1)[0]
    part_a = float(a.gather(-1, torch.tensor(ids[10:26])[:, None]).sum())
    part_b = float(b[-10:].gather(-1, torch.tensor(ids[26:36])[:, None]).sum())
    assert logprob == pytest.approx(part_a + part_b, rel=1e-5, abs=1e-4)


def test_loglikelihood_rolling(tiny_model):
    from verifier.lmeval.model import GenesysLM

    tok = ByteTokenizer()
    text = "for i in range(10):\n    print(i)\n"  # 34 tokens
    short = GenesysLM(model=tiny_model, tokenizer=tok, max_length=64)
    (value,) = short.loglikelihood_rolling([_instance("loglikelihood_rolling", (text,))], disable_tqdm=True)
    expected, _ = _direct_logprob(tiny_model, [tok.eos_id], tok.encode(text))
    assert value == pytest.approx(expected, rel=1e-5, abs=1e-4)
    # with windows: the same as lm-eval's own rolling windows
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

    windowed = GenesysLM(model=tiny_model, tokenizer=tok, max_length=10)
    (value,) = windowed.loglikelihood_rolling([_instance("loglikelihood_rolling", (text,))], disable_tqdm=True)
    total = 0.0
    for ctx, pred in map(make_disjoint_window, get_rolling_token_windows(tok.encode(text), tok.eos_id, 10, 1)):
        total += _direct_logprob(tiny_model, ctx, pred)[0]
    assert value == pytest.approx(total, rel=1e-5, abs=1e-4)


class Counter(nn.Module):
    """Predicts the byte after the last one: 'a' -> 'b' -> 'c' ...; 255 -> 0 (end of text)."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return F.one_hot((x + 1) % 256, 256).float() * 10


def test_generate_until_stops():
    from verifier.lmeval.model import GenesysLM

    lm = GenesysLM(model=Counter(), tokenizer=ByteTokenizer(), max_length=8)
    requests = [
        ("a", {"until": ["e"], "max_gen_toks": 50}),
        ("a", {"until": "ef", "max_gen_toks": 50}),
        ("a", {"until": ["zz"], "max_gen_toks": 5}),
        ("\xfc", {"until": ["q"]}),  # UTF-8 c3 bc -> bd, be, bf ... ff, then end of text
        ("0", {"until": ["x", "4"], "max_gen_toks": 50, "do_sample": False}),
    ]
    out = lm.generate_until([_instance("generate_until", r) for r in requests], disable_tqdm=True)
    assert out[0] == "bcd"
    assert out[1] == "bcd"
    assert out[2] == "bcdef"
    assert len(out[3]) > 0 and "\x00" not in out[3]
    assert out[4] == "123"


# -- lm-eval end to end ---------------------------------------------------------------


def test_run_lm_eval_genesys_continuation(checkpoint):
    results = run_lm_eval(checkpoint, ["genesys_continuation"], limit=20, batch_size=8)
    metrics = results["genesys_continuation"]
    assert 0.0 <= metrics["acc"] <= 1.0 and 0.0 <= metrics["acc_norm"] <= 1.0
    assert metrics["samples"] == 20
    assert "acc_stderr" in metrics


def test_paper_task_offline_gives_clear_error(checkpoint):
    start = time.perf_counter()
    with pytest.raises(EvaluationError) as info:
        run_lm_eval(checkpoint, ["rte"], limit=5)
    assert time.perf_counter() - start < 30
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("task rte needs dataset nyu-mll/glue from the Hugging Face Hub")
    assert "genesys_continuation" in message


def test_paper_task_names_exist_in_lm_eval():
    import lm_eval
    from lm_eval.tasks import TaskManager

    builtin = Path(lm_eval.__file__).resolve().parent / "tasks"
    folders = sorted({str(builtin / folder) for _, folder in PAPER_TASK_DATASETS.values()})
    manager = TaskManager(include_path=folders, include_defaults=False)
    assert set(PAPER_TASKS) <= set(manager.all_tasks)
    assert "blimp" in manager.all_groups and "inverse_scaling_mc" in manager.all_tags


# -- the offline continuation task ------------------------------------------------------


def test_continuation_documents_deterministic_and_true(cache_dir):
    from verifier.data.corpus import load_corpus
    from verifier.lmeval.tasks import continuation_data as cd

    corpus = load_corpus("stdlib")
    header, docs = cd.build_documents(corpus, n_docs=60)
    again = cd.build_documents(corpus, n_docs=60)
    assert (header, docs) == again
    assert header["corpus_fingerprint"] == corpus.fingerprint("validation")
    texts = dict(zip([p.relative_to(corpus.root).as_posix() for p in corpus.files("validation")],
                     corpus.iter_text("validation")))
    labels = set()
    for doc in docs:
        assert len(doc["choices"]) == 4 and len(set(doc["choices"])) == 4
        assert all(len(c) == 64 for c in doc["choices"])
        name, offset = doc["source"].rsplit(":", 1)
        text, offset = texts[name], int(offset)
        assert text[offset:offset + 64] == doc["choices"][doc["label"]]
        assert text[:offset].endswith(doc["context"]) and doc["context"].endswith("\n")
        assert 0 < len(doc["context"]) <= 200
        labels.add(doc["label"])
    assert labels == {0, 1, 2, 3}
    # cached once, then read back
    first = cd.documents(n_docs=60)
    assert first[2].is_file() and str(first[2]).startswith(str(cache_dir))
    assert cd.documents(n_docs=60)[:2] == first[:2] == (header, docs)
    dataset = cd.load_dataset(n_docs=60, version=1.0, checkpoint="ignored")
    assert dataset["test"].num_rows == 60 and dataset["test"][0]["choices"] == docs[0]["choices"]


# -- the command line -------------------------------------------------------------------


def test_cli_wrapper_runs_lm_eval(checkpoint, cache_dir):
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "GENESYS_CACHE": str(cache_dir),
           "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "verifier.lmeval", "--model", "genesys", "--model_args", f"checkpoint={checkpoint}",
         "--tasks", "genesys_continuation", "--limit", "5"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "genesys_continuation" in proc.stdout
    assert "|acc" in proc.stdout.replace(" ", "") and "acc_norm" in proc.stdout


@pytest.mark.slow
def test_harness_cli_with_task_yaml_path(checkpoint, cache_dir, tmp_path):
    """lm-eval's own `lm_eval` command, no wrapper: the task YAML given by path
    loads our module, which registers the model (indexes every harness task: ~20-40 s)."""
    lm_eval_cli = Path(sys.executable).parent / "lm_eval"
    if not lm_eval_cli.exists():
        pytest.skip("no lm_eval command next to this interpreter")
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "GENESYS_CACHE": str(cache_dir),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [str(lm_eval_cli), "--model", "genesys", "--model_args", f"checkpoint={checkpoint}", "--device", "cpu",
         "--tasks", str(ROOT / "verifier/lmeval/tasks/genesys_continuation.yaml"), "--limit", "3"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "genesys_continuation" in proc.stdout and "acc_norm" in proc.stdout
