"""Corpora: the embedded stdlib corpus, local files and globs, splits and fingerprints."""

import json
import os
import sysconfig
from pathlib import Path

import numpy as np
import pytest
import torch

from verifier.data.corpus import (
    DOC_SEPARATOR,
    SPLITS,
    CorpusError,
    FileCorpus,
    StdlibCorpus,
    load_corpus,
    stdlib_files,
)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def text_dir(tmp_path):
    """Forty small text files in nested folders, plus a binary file and a hidden one."""
    root = tmp_path / "texts"
    for i in range(40):
        write(root / f"part{i % 3}" / f"doc{i:02d}.txt", f"document {i}\n" + "line é ✓\n" * (i + 1))
    (root / "image.bin").write_bytes(b"\x89PNG\x00\x01\x02")
    write(root / ".hidden" / "secret.txt", "not part of the corpus")
    return root


@pytest.fixture(scope="module")
def stdlib():
    return load_corpus("stdlib")


# -- stdlib ----------------------------------------------------------------------------


def test_stdlib_is_the_running_interpreters_source_without_tests(stdlib):
    root = Path(sysconfig.get_paths()["stdlib"]).resolve()
    train, val = stdlib.files("train"), stdlib.files("validation")
    assert len(train) > 300 and len(val) > 5
    for path in train + val:
        rel = path.relative_to(root)
        assert path.suffix == ".py"
        assert not {"test", "tests", "idle_test", "site-packages", "__pycache__"} & set(rel.parts[:-1])
        assert not rel.name.startswith("test_")
    rels = {p.relative_to(root).as_posix() for p in train + val}
    assert "os.py" in rels and "json/__init__.py" in rels


def test_stdlib_split_is_by_file_disjoint_and_deterministic(stdlib):
    train, val = stdlib.files("train"), stdlib.files("validation")
    assert not set(train) & set(val)
    assert set(train) | set(val) == set(stdlib_files())
    again = StdlibCorpus()
    assert again.files("train") == train and again.files("validation") == val
    # roughly the documented 5% of files
    assert 0.01 < len(val) / (len(train) + len(val)) < 0.12


def test_stdlib_fingerprint_and_a_small_read(stdlib):
    fp = {s: stdlib.fingerprint(s) for s in SPLITS}
    assert fp["train"] != fp["validation"]
    assert all(len(v) == 16 and int(v, 16) >= 0 for v in fp.values())
    assert StdlibCorpus().fingerprint("validation") == fp["validation"]
    data = stdlib.read_bytes("validation", 5000, seed=3)
    assert len(data) == 5000 and data == stdlib.read_bytes("validation", 5000, seed=3)
    assert next(stdlib.iter_text("validation"))


def test_stdlib_exclusions_on_a_fake_tree(tmp_path):
    root = tmp_path / "lib"
    keep = ["os.py", "json/__init__.py", "email/mime/text.py", "testing_tools.py"]
    drop = [
        "test/test_os.py", "test/support/__init__.py", "unittest/test/test_case.py",
        "idlelib/idle_test/test_x.py", "lib2to3/tests/data/bom.py", "site-packages/pkg/mod.py",
        "dist-packages/x.py", "__pycache__/os.py", "test_top.py", "_sysconfigdata__linux.py",
        "config-3.11-x86_64-linux-gnu/python-config.py", "README.txt", "json/tool.pyc",
    ]
    for rel in keep + drop:
        write(root / rel, f"# {rel}\n")
    corpus = StdlibCorpus(root=root)
    rels = sorted(p.relative_to(root.resolve()).as_posix() for s in SPLITS for p in corpus.files(s))
    assert rels == sorted(keep)


def test_stdlib_missing_root_is_a_clear_error(tmp_path):
    with pytest.raises(CorpusError, match="standard library source is not at"):
        StdlibCorpus(root=tmp_path / "nowhere")


# -- local files -------------------------------------------------------------------------


def test_directory_corpus_splits_by_file(text_dir):
    corpus = load_corpus(str(text_dir))
    train, val = corpus.files("train"), corpus.files("validation")
    assert len(train) + len(val) == 40 and val and train
    assert not set(train) & set(val)
    assert all(p.suffix == ".txt" and ".hidden" not in p.parts for p in train + val)
    # the split depends only on relative paths: a copy elsewhere splits the same way
    rel = lambda c, s: [p.relative_to(c.root.resolve()).as_posix() for p in c.files(s)]
    expected = {s: rel(corpus, s) for s in SPLITS}
    fingerprint = corpus.fingerprint("train")
    copy = text_dir.parent / "copy"
    os.rename(text_dir, copy)
    moved = load_corpus(str(copy))
    assert {s: rel(moved, s) for s in SPLITS} == expected
    assert moved.fingerprint("train") == fingerprint


def test_glob_and_files_specs(text_dir):
    only0 = load_corpus(str(text_dir / "part0" / "*.txt"))
    assert {p.parent.name for s in SPLITS for p in only0.files(s)} == {"part0"}
    both = load_corpus(f"files:{text_dir / 'part0' / '*.txt'},{text_dir / 'part1'}")
    names = {p.parent.name for s in SPLITS for p in both.files(s)}
    assert names == {"part0", "part1"}
    recursive = load_corpus(str(text_dir / "**" / "*.txt"))
    assert sum(len(recursive.files(s)) for s in SPLITS) == 40


def test_every_file_is_read_once_in_order(text_dir):
    corpus = load_corpus(str(text_dir))
    texts = list(corpus.iter_text("train"))
    assert texts == [p.read_text(encoding="utf-8") for p in corpus.files("train")]
    assert corpus.num_bytes("train") == sum(len(t.encode()) for t in texts)


def test_fingerprint_is_stable_and_changes_with_content_and_split(text_dir):
    corpus = load_corpus(str(text_dir))
    fp = corpus.fingerprint("train")
    assert fp == corpus.fingerprint("train") == load_corpus(str(text_dir)).fingerprint("train")
    assert fp != corpus.fingerprint("validation")
    val_fp = corpus.fingerprint("validation")
    target = corpus.files("train")[3]
    target.write_text(target.read_text(encoding="utf-8") + "edited\n", encoding="utf-8")
    assert corpus.fingerprint("train") != fp  # the same object sees the edit
    assert load_corpus(str(text_dir)).fingerprint("train") != fp
    assert corpus.fingerprint("validation") == val_fp
    # same size, different content: still a different fingerprint
    before = corpus.fingerprint("train")
    data = target.read_bytes()
    target.write_bytes(data[:-2] + b"X\n")
    os.utime(target, ns=(1, 1))
    assert corpus.fingerprint("train") != before


def test_read_bytes_is_a_deterministic_seeded_sample(text_dir):
    corpus = load_corpus(str(text_dir))
    a = corpus.read_bytes("train", 300, seed=0)
    assert len(a) == 300 and a == corpus.read_bytes("train", 300, seed=0)
    assert a != corpus.read_bytes("train", 300, seed=1)
    everything = corpus.read_bytes("train", 10**9, seed=5)
    docs = everything.split(DOC_SEPARATOR)
    assert sorted(docs) == sorted(corpus.iter_bytes("train"))
    assert corpus.read_bytes("train", 0) == b""
    assert everything.startswith(corpus.read_bytes("train", 1000, seed=5))


def test_single_file_is_split_by_lines(tmp_path):
    lines = [f"line {i}\n" for i in range(100)]
    path = write(tmp_path / "one.txt", "".join(lines))
    corpus = load_corpus(str(path))
    assert corpus.files("train") == corpus.files("validation") == [path.resolve()]
    train, val = "".join(corpus.iter_text("train")), "".join(corpus.iter_text("validation"))
    assert train == "".join(lines[:95]) and val == "".join(lines[95:])
    assert corpus.fingerprint("train") != corpus.fingerprint("validation")
    tiny = load_corpus(str(write(tmp_path / "tiny.txt", "a\nb\n")))
    assert list(tiny.iter_text("train")) == ["a\n"] and list(tiny.iter_text("validation")) == ["b\n"]


def test_two_files_still_give_a_validation_file(tmp_path):
    write(tmp_path / "a.txt", "alpha\n")
    write(tmp_path / "b.txt", "beta\n")
    corpus = load_corpus(str(tmp_path / "*.txt"))
    assert len(corpus.files("train")) == len(corpus.files("validation")) == 1


def test_clear_errors(tmp_path):
    with pytest.raises(CorpusError, match="no file matched"):
        load_corpus(str(tmp_path / "*.nothing"))
    with pytest.raises(CorpusError, match="no file matched"):
        load_corpus(str(tmp_path / "missing.txt"))
    with pytest.raises(CorpusError, match="unknown corpus 'wikitext'.*stdlib"):
        load_corpus("wikitext")
    with pytest.raises(CorpusError, match="files:"):
        load_corpus("files:")
    with pytest.raises(CorpusError, match="unknown split"):
        load_corpus(str(write(tmp_path / "x.txt", "x\n"))).files("test")
    bad = tmp_path / "bad"
    write(bad / "ok.txt", "fine\n")
    (bad / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    corpus = load_corpus(str(bad / "*.txt"))
    with pytest.raises(CorpusError, match="latin1.txt is not UTF-8"):
        for split in SPLITS:
            list(corpus.iter_text(split))
    gone = load_corpus(str(bad / "*.txt"))
    (bad / "ok.txt").unlink()
    with pytest.raises(CorpusError, match="cannot read .*ok.txt"):
        for split in SPLITS:
            gone.fingerprint(split)


def test_val_fraction_is_validated(tmp_path):
    write(tmp_path / "a.txt", "a\n")
    with pytest.raises(CorpusError, match="val_fraction"):
        load_corpus(str(tmp_path / "a.txt"), val_fraction=1.5)
    assert isinstance(load_corpus(str(tmp_path / "a.txt"), val_fraction=0.2), FileCorpus)


# -- pre-tokenized shards ------------------------------------------------------------------

from verifier.data.corpus import HFCorpus, TokenShards, _host, pretokenize, shards_path  # noqa: E402
from verifier.data.tokenizers import ByteTokenizer, train_bpe  # noqa: E402


def test_pretokenize_round_trips_across_shards(text_dir, tmp_path):
    corpus, tok = load_corpus(str(text_dir)), ByteTokenizer()
    seen = []
    shards = pretokenize(corpus, "train", tok, tmp_path / "cache", shard_tokens=500,
                         progress=lambda done, total: seen.append((done, total)))
    texts = list(corpus.iter_text("train"))
    assert len(shards.index["shards"]) > 3 and shards.dtype == np.uint16
    assert [tok.decode(ids) for ids in shards.documents()] == texts
    assert shards.num_docs == len(texts) and shards.exhausted
    assert shards.num_tokens == sum(len(t.encode()) + 1 for t in texts) == shards.num_bytes
    assert shards.bytes_per_token == 1.0
    assert seen and seen[-1] == (shards.num_tokens, None)
    assert shards.index["corpus"]["fingerprint"] == corpus.fingerprint("train")
    # reading a range that crosses shard boundaries
    joined = np.concatenate([np.frombuffer(t.encode(), np.uint8).astype(np.uint16).tolist() + [0] for t in texts])
    assert np.array_equal(shards.tokens(450, 1600), joined[450:1600])


def test_pretokenize_with_bpe_counts_bytes_per_token(text_dir, tmp_path):
    corpus = load_corpus(str(text_dir))
    tok = train_bpe(corpus, vocab_size=300, cache_dir=tmp_path / "cache")
    shards = pretokenize(corpus, "validation", tok, tmp_path / "cache")
    texts = list(corpus.iter_text("validation"))
    assert [tok.decode(ids) for ids in shards.documents()] == texts
    assert shards.num_bytes == sum(len(t.encode()) + 1 for t in texts)
    assert shards.bytes_per_token > 1.0 and shards.vocab_size == tok.vocab_size


def test_pretokenize_reuses_its_cache_without_writing(text_dir, tmp_path):
    corpus, tok, cache = load_corpus(str(text_dir)), ByteTokenizer(), tmp_path / "cache"
    first = pretokenize(corpus, "train", tok, cache)
    stamps = {p.name: p.stat().st_mtime_ns for p in first.path.iterdir()}
    second = pretokenize(load_corpus(str(text_dir)), "train", tok, cache)
    assert second.path == first.path
    assert {p.name: p.stat().st_mtime_ns for p in second.path.iterdir()} == stamps
    assert [p.name for p in (cache / "tokens").iterdir()] == [first.path.name]  # nothing left over
    # a different budget, split or content is a different cache entry
    assert pretokenize(corpus, "train", tok, cache, max_tokens=100).path != first.path
    assert pretokenize(corpus, "validation", tok, cache).path != first.path
    corpus.files("train")[0].write_text("changed\n", encoding="utf-8")
    assert pretokenize(corpus, "train", tok, cache).path != first.path


def test_pretokenize_ignores_what_a_killed_writer_left(text_dir, tmp_path):
    corpus, tok, cache = load_corpus(str(text_dir)), ByteTokenizer(), tmp_path / "cache"
    final = shards_path(corpus, "train", tok, cache)
    # a half-written folder with no index, and a temporary folder of a dead writer
    final.mkdir(parents=True)
    (final / "shard_00000.bin").write_bytes(b"\x07\x00" * 10)
    dead = final.parent / f".{final.name}.tmp-{_host()}-999999999-abcd"
    dead.mkdir()
    (dead / "shard_00000.bin").write_bytes(b"\x01\x00" * 10)
    with pytest.raises(CorpusError, match="no complete token shards"):
        TokenShards(final)
    shards = pretokenize(corpus, "train", tok, cache)
    assert shards.path == final and not dead.exists()
    assert [tok.decode(d) for d in shards.documents()] == list(corpus.iter_text("train"))
    index = json.loads((final / "index.json").read_text())
    index["shards"][0]["num_tokens"] += 1
    index["num_tokens"] += 1
    (final / "index.json").write_text(json.dumps(index))
    # an index that lies about its shard sizes is not complete either
    again = pretokenize(corpus, "train", tok, cache)  # rebuilt, not trusted
    assert again.num_tokens == shards.num_tokens


def test_token_budget_and_batches(text_dir, tmp_path):
    corpus, tok = load_corpus(str(text_dir)), ByteTokenizer()
    shards = pretokenize(corpus, "train", tok, tmp_path / "cache", max_tokens=1000, shard_tokens=300)
    assert shards.num_tokens == 1000 and not shards.exhausted
    assert 990 <= shards.num_bytes <= 1010
    batch = shards.batch(6, 32, torch.Generator().manual_seed(0))
    assert batch.shape == (6, 33) and batch.dtype == torch.int64
    assert int(batch.min()) >= 0 and int(batch.max()) < tok.vocab_size
    assert torch.equal(batch, shards.batch(6, 32, torch.Generator().manual_seed(0)))
    assert torch.equal(shards.batch(4, 16, 7), shards.batch(4, 16, np.random.default_rng(7)))
    stream = shards.tokens().astype(np.int64)
    for row in shards.batch(20, 64, 3).numpy():  # every window is a contiguous slice
        assert any(np.array_equal(stream[s:s + 65], row) for s in range(len(stream) - 64))
    windows = list(shards.eval_batches(4, 99))
    assert sum(len(w) for w in windows) == (1000 - 1) // 99 and all(w.shape[1] == 100 for w in windows)
    assert torch.equal(windows[0][1, 0], windows[0][0, -1])  # consecutive, overlapping by one
    with pytest.raises(CorpusError, match="too few"):
        shards.batch(1, 5000)


def test_pretokenize_stdlib_validation(stdlib, tmp_path):
    shards = pretokenize(stdlib, "validation", ByteTokenizer(), tmp_path / "cache")
    assert shards.num_docs == len(stdlib.files("validation")) and shards.bytes_per_token == 1.0
    assert shards.batch(2, 128, 0).shape == (2, 129)


# -- Hugging Face datasets, offline only ------------------------------------------------------


@pytest.fixture
def jsonl(tmp_path):
    path = tmp_path / "docs.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        for i in range(40):
            fh.write(json.dumps({"text": f"document {i}: " + "ünïcode words " * (i % 7 + 1), "id": i}) + "\n")
    return path


def test_hf_corpus_from_a_local_json_file(jsonl, tmp_path):
    corpus = load_corpus("hf:json", data_files=str(jsonl), val_docs=4)
    assert isinstance(corpus, HFCorpus) and not corpus.bounded and corpus.files("train") == []
    val, train = list(corpus.iter_text("validation")), list(corpus.iter_text("train"))
    assert [t.split(":")[0] for t in val] == [f"document {i}" for i in range(4)]
    assert len(train) == 36 and not set(val) & set(train)
    assert corpus.fingerprint("train") != corpus.fingerprint("validation")
    assert corpus.fingerprint("train") != load_corpus("hf:json", data_files=str(jsonl), val_docs=5).fingerprint("train")
    sample = corpus.read_bytes("train", 200, seed=1)
    assert len(sample) == 200 and sample == corpus.read_bytes("train", 200, seed=1)
    with pytest.raises(CorpusError, match="token budget"):
        pretokenize(corpus, "train", ByteTokenizer(), tmp_path / "cache")
    progress = []
    shards = pretokenize(corpus, "train", ByteTokenizer(), tmp_path / "cache", max_tokens=500,
                         progress=lambda done, total: progress.append((done, total)))
    assert shards.num_tokens == 500 and progress[-1] == (500, 500)
    assert ByteTokenizer().decode(next(shards.documents())) == train[0]


def test_hf_corpus_from_a_saved_dataset(tmp_path):
    import datasets

    datasets.Dataset.from_dict({"content": [f"row {i}" for i in range(10)]}).save_to_disk(str(tmp_path / "saved"))
    corpus = load_corpus(f"hf:{tmp_path / 'saved'}", text_field="content", val_docs=2)
    assert list(corpus.iter_text("validation")) == ["row 0", "row 1"]
    assert len(list(corpus.iter_text("train"))) == 8
    with pytest.raises(CorpusError, match="no field 'text'.*content"):
        list(load_corpus(f"hf:{tmp_path / 'saved'}", val_docs=2).iter_text("train"))


def test_hf_names_offline_give_one_clear_line(tmp_path):
    for spec in ("fineweb-edu", "smollm", "hf:someone/some-data:cfg"):
        corpus = load_corpus(spec)
        assert corpus.name == spec
        with pytest.raises(CorpusError) as err:
            next(corpus.iter_text("train"))
        message = str(err.value)
        assert "can't reach" in message and "--corpus stdlib" in message and "\n" not in message
        with pytest.raises(CorpusError, match="can't reach"):
            pretokenize(corpus, "train", ByteTokenizer(), tmp_path / "cache", max_tokens=100)
    assert load_corpus("fineweb-edu").path == "HuggingFaceFW/fineweb-edu"
    assert load_corpus("fineweb-edu").config == "sample-10BT"


def test_hf_unreachable_hub_fails_fast_without_offline_flags(monkeypatch):
    # offline flags cleared, the endpoint is a closed local port: the reachability
    # probe answers before `datasets` gets a chance to retry for half a minute
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(CorpusError, match=r"can't reach .*127\.0\.0\.1:9.*--corpus stdlib"):
        next(HFCorpus("someone/some-data", probe_timeout=2.0).iter_text("train"))
