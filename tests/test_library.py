"""The reference library: schema of every record, coverage of the field, links to the seeds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from designs.seeds import SEEDS_DIR, library_units, seed_names
from knowledge.library import (RECORDS_DIR, TAGS, LibraryError, PaperRecord, get_record, load_library,
                               records_for_unit, records_with_tag)

# Each research area the library must cover, as the tag that marks it.
CATEGORIES = {
    "attention": "attention", "efficient attention": "efficient-attention",
    "sparse / local attention": "sparse-attention", "linear attention": "linear-attention",
    "delta rule": "delta-rule", "state-space models": "ssm", "modern RNNs": "rnn",
    "long convolutions": "long-convolution", "test-time training": "test-time-training",
    "mixture of experts": "moe", "normalization": "normalization", "position encodings": "position-encoding",
    "feed-forward": "feed-forward", "hybrids": "hybrid", "scaling laws": "scaling",
    "benchmarks": "benchmark", "recall": "recall", "architecture discovery": "architecture-search",
}


@pytest.fixture(scope="module")
def library() -> dict[str, PaperRecord]:
    return load_library()


def seed_papers() -> list[tuple[str, dict]]:
    return [(name, json.loads((SEEDS_DIR / f"{name}.json").read_text())) for name in seed_names()]


def good_record(**changes) -> dict:
    record = json.loads((RECORDS_DIR / "gla-2023.json").read_text())
    record.update({"related": [], **changes})
    return record


def write(directory: Path, record: dict, name: str | None = None) -> Path:
    path = directory / f"{name or record['id']}.json"
    path.write_text(json.dumps(record))
    return path


def test_every_record_validates_and_is_big_enough(library):
    assert len(library) >= 80
    for rid, record in library.items():
        assert rid == record.id
        assert record.tags and all(t in TAGS for t in record.tags)
        assert 200 <= len(record.summary) <= 2000


def test_ids_and_arxiv_ids_are_unique(library):
    files = sorted(p.stem for p in RECORDS_DIR.glob("*.json"))
    assert files == sorted(library)
    arxiv = [r.arxiv for r in library.values() if r.arxiv]
    assert len(arxiv) == len(set(arxiv))


def test_related_ids_resolve(library):
    for record in library.values():
        assert record.id not in record.related
        assert set(record.related) <= set(library), record.id


@pytest.mark.parametrize("category,tag", sorted(CATEGORIES.items()))
def test_category_is_covered(library, category, tag):
    assert len(records_with_tag(tag)) >= 2, f"{category}: fewer than 2 records tagged {tag!r}"


def test_named_papers_are_present(library):
    for arxiv in ["2506.20249", "2403.17844", "2312.04927", "2001.08361", "2203.15556",  # Genesys, MAD, Zoology, scaling
                  "2102.11174", "2406.06484", "2410.01201", "2407.04620", "2401.04088"]:
        get_record(arxiv)


@pytest.mark.parametrize("name,seed", seed_papers(), ids=lambda x: x if isinstance(x, str) else "")
def test_seed_papers_are_in_the_library(library, name, seed):
    paper = seed["paper"]
    if paper.get("arxiv"):
        record = get_record(paper["arxiv"])
    else:
        record = next((r for r in library.values() if r.title.lower() == paper["title"].lower()), None)
        assert record is not None, f"seed {name}: no record titled {paper['title']!r}"
    assert name in record.seeds, f"{record.id} does not list the seed {name!r} that follows it"
    for rel in seed.get("related", []):
        if rel.get("arxiv"):
            get_record(rel["arxiv"])


def test_every_seed_unit_is_linked_to_a_paper(library):
    linked = {u for r in library.values() for u in r.units}
    assert set(library_units()) <= linked, sorted(set(library_units()) - linked)
    assert {r.id for r in records_for_unit("GatedLinearAttention")} >= {"gla-2023"}
    assert records_for_unit("NoSuchUnit") == []


def test_get_record_by_id_and_arxiv(library):
    gla = get_record("gla-2023")
    assert gla.arxiv == "2312.06635"
    assert get_record("2312.06635") is gla
    assert get_record("arXiv:2312.06635v2") is gla
    assert get_record("https://arxiv.org/abs/2312.06635") is gla


def test_get_record_suggests_close_matches(library):
    with pytest.raises(KeyError, match="gla-2023"):
        get_record("gla-2024")
    with pytest.raises(KeyError, match="mamba"):
        get_record("mamba-2022")
    with pytest.raises(KeyError, match="no library record"):
        get_record("9999.99999")


def test_markdown_and_document(library):
    md = get_record("gla-2023").to_markdown()
    first = md.splitlines()[0]
    assert first.startswith("**[gla-2023] Gated Linear Attention Transformers")
    assert "2023" in first and "ICML 2024" in first and "arXiv:2312.06635" in first and "et al." in first
    assert "Tags: linear-attention" in md
    gpt2 = get_record("gpt2-2019").to_markdown()
    assert "arXiv" not in gpt2.splitlines()[0]
    doc = get_record("mamba2-2024").document()
    assert doc.startswith("Transformers are SSMs") and "Tags:" in doc and "ssm" in doc


def test_load_is_cached_and_returns_copies():
    a, b = load_library(), load_library()
    assert a == b and a is not b
    assert next(iter(a.values())) is next(iter(b.values()))


def test_a_good_record_loads_from_another_directory(tmp_path):
    write(tmp_path, good_record())
    assert list(load_library(tmp_path)) == ["gla-2023"]


@pytest.mark.parametrize("changes,field", [
    ({"arxiv": "2312.635"}, "arxiv"),
    ({"year": 1985}, "year"),
    ({"tags": ["linear-attention", "quantum"]}, "tags"),
    ({"summary": "Too short."}, "summary"),
    ({"units": ["GatedLinearAttention", "FancyMixer"]}, "units"),
    ({"seeds": ["gpt5"]}, "seeds"),
    ({"authors": ["et al.", "Songlin Yang"]}, "authors"),
    ({"notes": "an extra field"}, "notes"),
    ({"mechanism": None}, "mechanism"),
])
def test_bad_records_are_rejected_naming_file_and_field(tmp_path, changes, field):
    write(tmp_path, good_record(**changes))
    with pytest.raises(LibraryError, match=rf"gla-2023\.json.*field '{field}"):
        load_library(tmp_path)


def test_missing_field_is_named(tmp_path):
    record = good_record()
    del record["venue"]
    write(tmp_path, record)
    with pytest.raises(LibraryError, match=r"gla-2023\.json.*field 'venue'"):
        load_library(tmp_path)


def test_id_must_match_file_name(tmp_path):
    write(tmp_path, good_record(), name="gla")
    with pytest.raises(LibraryError, match=r"gla\.json: field 'id'.*does not match"):
        load_library(tmp_path)


def test_duplicate_arxiv_ids_are_rejected(tmp_path):
    write(tmp_path, good_record())
    write(tmp_path, good_record(id="gla-copy-2023"))
    with pytest.raises(LibraryError, match=r"field 'arxiv'.*2312\.06635"):
        load_library(tmp_path)


def test_unknown_related_id_is_rejected(tmp_path):
    write(tmp_path, good_record(related=["mamba-2023"]))
    with pytest.raises(LibraryError, match=r"gla-2023\.json: field 'related': unknown id 'mamba-2023'"):
        load_library(tmp_path)


def test_unreadable_or_empty_libraries_are_rejected(tmp_path):
    with pytest.raises(LibraryError, match="no record files"):
        load_library(tmp_path)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(LibraryError, match=r"broken\.json: unreadable JSON"):
        load_library(tmp_path)
