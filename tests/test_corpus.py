"""Corpora: the embedded stdlib corpus, local files and globs, splits and fingerprints."""

import os
import sysconfig
from pathlib import Path

import pytest

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
