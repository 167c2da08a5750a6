"""Tokenizers: byte-level, BPE trained on a corpus and cached, Hugging Face by name."""

import json

import numpy as np
import pytest

from verifier.data.corpus import load_corpus
from verifier.data.tokenizers import (
    ByteTokenizer,
    Tokenizer,
    TokenizerError,
    bpe_cache_path,
    hf_tokenizer,
    load_tokenizer,
    train_bpe,
)

SAMPLES = [
    "",
    "plain ascii text\n",
    "héllo wörld ✓ 日本語 🙂\n\ttabs  and  spaces",
    "def f(x):\n    return x ** 2  # comment\r\n",
    "  leading spaces and trailing  ",
]


@pytest.fixture
def small_corpus(tmp_path):
    root = tmp_path / "corpus"
    root.mkdir()
    words = "the quick brown fox jumps over the lazy dog while a cat sleeps by the warm fire".split()
    for i in range(30):
        lines = [" ".join(words[(i + j) % len(words):] + words[: (i + j) % len(words)]) for j in range(20)]
        (root / f"doc{i:02d}.txt").write_text("\n".join(lines) + f"\ndocument {i}: café ✓\n", encoding="utf-8")
    return load_corpus(str(root))


def test_byte_tokenizer_round_trips_and_documents_its_eos():
    tok = load_tokenizer("byte")
    assert isinstance(tok, ByteTokenizer) and isinstance(tok, Tokenizer)
    assert tok.vocab_size == 256 and tok.eos_id == 0 and tok.name == "byte"
    assert len(tok.fingerprint) == 16 and tok.fingerprint == ByteTokenizer().fingerprint
    for text in SAMPLES:
        ids = tok.encode(text)
        assert ids == list(text.encode("utf-8")) and all(0 <= i < 256 for i in ids)
        assert tok.decode(ids) == text
        assert tok.decode(np.asarray(ids, dtype=np.uint16)) == text
        assert np.array_equal(tok.encode_array(text), np.asarray(ids))
    assert tok.encode("é") == [0xC3, 0xA9]
    assert tok.dtype == np.uint16
    assert tok.decode([0xC3]) == "\ufffd"  # a cut character decodes without raising


def test_bpe_trains_on_a_small_corpus_round_trips_and_is_cached(small_corpus, tmp_path):
    cache = tmp_path / "cache"
    messages = []
    tok = train_bpe(small_corpus, vocab_size=400, cache_dir=cache, progress=messages.append)
    assert tok.name == "bpe:400" and 258 <= tok.vocab_size <= 400 and tok.eos_id == 0
    assert messages and "trained BPE" in messages[-1]
    path = bpe_cache_path(small_corpus, "train", 400, cache)
    assert path.is_file() and json.loads(path.read_text())["model"]["type"] == "BPE"
    text = next(small_corpus.iter_text("train"))
    ids = tok.encode(text)
    assert len(ids) < len(text.encode()) / 2  # merges learned from the corpus
    for sample in SAMPLES + [text]:
        assert tok.decode(tok.encode(sample)) == sample
    assert tok.encode_batch(SAMPLES) == [tok.encode(s) for s in SAMPLES]

    mtime = path.stat().st_mtime_ns
    again = load_tokenizer("bpe:400", corpus=small_corpus, cache_dir=cache)
    assert path.stat().st_mtime_ns == mtime  # loaded, not retrained
    assert again.fingerprint == tok.fingerprint and again.encode(text) == ids

    other = train_bpe(small_corpus, vocab_size=300, cache_dir=cache)
    assert other.fingerprint != tok.fingerprint and other.vocab_size <= 300


def test_bpe_cache_follows_the_corpus(small_corpus, tmp_path):
    cache = tmp_path / "cache"
    before = bpe_cache_path(small_corpus, "train", 300, cache)
    target = small_corpus.files("train")[0]
    target.write_text(target.read_text(encoding="utf-8") + "new words here\n", encoding="utf-8")
    assert bpe_cache_path(small_corpus, "train", 300, cache) != before


def test_damaged_bpe_cache_is_retrained(small_corpus, tmp_path):
    cache = tmp_path / "cache"
    path = bpe_cache_path(small_corpus, "train", 300, cache)
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    tok = train_bpe(small_corpus, vocab_size=300, cache_dir=cache)
    assert tok.decode(tok.encode("the lazy dog")) == "the lazy dog"
    assert json.loads(path.read_text())["model"]["type"] == "BPE"


def test_tokenizer_spec_errors(small_corpus, tmp_path):
    with pytest.raises(TokenizerError, match="unknown tokenizer 'wordpiece'"):
        load_tokenizer("wordpiece")
    with pytest.raises(TokenizerError, match="pass corpus="):
        load_tokenizer("bpe:512")
    with pytest.raises(TokenizerError, match="at least 258"):
        load_tokenizer("bpe:100", corpus=small_corpus, cache_dir=tmp_path)
    with pytest.raises(TokenizerError, match="not available locally.*byte"):
        load_tokenizer("hf:no-such-owner/no-such-tokenizer")


def test_hf_tokenizer_from_a_local_tokenizer_json(small_corpus, tmp_path):
    bpe = train_bpe(small_corpus, vocab_size=300, cache_dir=tmp_path / "cache")
    folder = tmp_path / "my-tokenizer"
    folder.mkdir()
    bpe.save(folder / "tokenizer.json")
    tok = load_tokenizer(f"hf:{folder}")
    assert tok.name == f"hf:{folder}" and tok.fingerprint == bpe.fingerprint
    assert tok.encode("the lazy dog") == bpe.encode("the lazy dog")
    assert hf_tokenizer(str(folder / "tokenizer.json")).vocab_size == bpe.vocab_size
    (tmp_path / "broken.json").write_text("[]")
    with pytest.raises(TokenizerError, match="cannot load tokenizer file"):
        hf_tokenizer(str(tmp_path / "broken.json"))
