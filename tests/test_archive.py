"""Tests of the archive (designs/archive.py) and its artifact store.

Most tests run twice: on SQLite in a run directory and on PostgreSQL (a
throwaway cluster, see tests/pg.py). The crash and concurrency tests run this
file as a script (`python test_archive.py write ...`) to get real OS processes.
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pg
import pytest
from sqlalchemy import inspect, text

from designs import archive as archive_module
from designs.archive import Archive, ArchiveError, UnknownDesign
from designs.artifacts import ArtifactStore, MissingArtifact, canonical_json

TREE = {"name": "gpt2", "root": "GPT2Block", "units": {"GPT2Block": {"code": "..."}}}


# ---------------------------------------------------------------------------
# Backends


@dataclasses.dataclass
class Backend:
    name: str  # "sqlite" or "postgres"
    target: str  # run directory or URL
    artifacts_dir: str | None

    def open(self) -> Archive:
        return Archive.open(self.target, artifacts_dir=self.artifacts_dir)


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """One fresh database on a PostgreSQL server for the whole session."""
    with ExitStack() as stack:
        try:
            server = stack.enter_context(pg.server())
        except pg.Unavailable as e:
            pytest.skip(str(e))
        yield stack.enter_context(pg.fresh_database(server))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return Backend("sqlite", str(tmp_path / "run"), None)
    url = pg.fresh_schema(request.getfixturevalue("pg_database"))  # an empty schema per test
    return Backend("postgres", url, str(tmp_path / "artifacts"))


@pytest.fixture
def archive(backend: Backend) -> Iterator[Archive]:
    with backend.open() as opened:
        yield opened


def record_seed(archive: Archive, name: str = "gpt2", fingerprint: str = "fp-gpt2", **kw):
    return archive.record_design(name, dict(TREE, name=name), fingerprint,
                                 mode="seed", status="seed", **kw)


def execute(archive: Archive, sql: str) -> None:
    with archive._engine.begin() as conn:
        conn.execute(text(sql))


# ---------------------------------------------------------------------------
# Designs and lineage


def test_create_and_reopen(backend: Backend):
    with backend.open() as archive:
        first = record_seed(archive, family="transformer", meta={"arxiv": "1905.00000"})
    with backend.open() as archive:
        assert archive.get_design("gpt2") == first
        assert archive.load_tree_json("gpt2") == TREE
        assert archive.artifacts.has(first.tree_hash)
        if backend.name == "sqlite":
            assert (Path(backend.target) / "archive.db").is_file()
            assert archive.artifacts.root == Path(backend.target, "artifacts").absolute()
            with archive._engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
                assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_record_design_twice_changes_nothing(archive: Archive):
    first = record_seed(archive)
    child = archive.record_design("gpt2-a", {"x": 1}, "fp-a", mode="mutation",
                                  status="proposed", parents=["gpt2"], proposal={"idea": "gate"})
    again = archive.record_design("gpt2-a", {"x": 1}, "fp-a", mode="mutation",
                                  status="implemented", parents=["gpt2"])
    assert again == child  # status, proposal and timestamps untouched
    assert record_seed(archive) == first
    assert [d.name for d in archive.list_designs()] == ["gpt2", "gpt2-a"]
    assert archive.get_design("gpt2-a").parents == ("gpt2",)


def test_same_name_other_fingerprint_is_refused(archive: Archive):
    first = record_seed(archive)
    with pytest.raises(ArchiveError, match=r"'gpt2' is already in .* names are immutable"):
        record_seed(archive, fingerprint="fp-other")
    assert archive.get_design("gpt2") == first


def test_lineage_keeps_parent_order(archive: Archive):
    record_seed(archive, "mamba2", "fp-m")
    record_seed(archive, "gpt2", "fp-g")
    child = archive.record_design("hybrid", {"x": 2}, "fp-h", mode="crossover",
                                  status="proposed", parents=["mamba2", "gpt2"])
    assert child.parents == ("mamba2", "gpt2")
    assert archive.get_design("hybrid").parents == ("mamba2", "gpt2")


def test_unknown_parent_records_nothing(archive: Archive):
    record_seed(archive)
    with pytest.raises(ArchiveError, match=r"parents of 'orphan' are not in .*\['nope'\]"):
        archive.record_design("orphan", {}, "fp-o", mode="mutation", status="proposed",
                              parents=["gpt2", "nope"])
    with pytest.raises(ArchiveError, match="repeat"):
        archive.record_design("twice", {}, "fp-t", mode="crossover", status="proposed",
                              parents=["gpt2", "gpt2"])
    with pytest.raises(ArchiveError, match="mode 'evolved'"):
        archive.record_design("bad", {}, "fp-b", mode="evolved", status="proposed")
    assert [d.name for d in archive.list_designs()] == ["gpt2"]


def test_update_design_status(archive: Archive):
    first = record_seed(archive)
    updated = archive.update_design_status("gpt2", "verified", reviews=[{"score": 4}],
                                           meta={"note": "ok"})
    assert (updated.status, updated.reviews, updated.meta) == ("verified", [{"score": 4}],
                                                               {"note": "ok"})
    assert updated.created_at == first.created_at < updated.updated_at
    assert archive.get_design("gpt2") == updated
    with pytest.raises(TypeError, match="fingerprint"):
        archive.update_design_status("gpt2", "verified", fingerprint="x")
    with pytest.raises(UnknownDesign):
        archive.update_design_status("gpt3", "verified")


def test_list_and_find(archive: Archive):
    record_seed(archive, "gpt2", "fp-g")
    record_seed(archive, "llama", "fp-l")
    archive.record_design("gpt2-a", {}, "fp-g", mode="mutation", status="proposed",
                          parents=["gpt2"])
    assert [d.name for d in archive.list_designs(mode="seed")] == ["gpt2", "llama"]
    assert [d.name for d in archive.list_designs(status="proposed")] == ["gpt2-a"]
    assert archive.list_designs(status="seed", mode="mutation") == []
    assert [d.name for d in archive.find_by_fingerprint("fp-g")] == ["gpt2", "gpt2-a"]
    assert archive.find_by_fingerprint("fp-none") == []


def test_unknown_design_names_close_ones(archive: Archive):
    for name in ("gpt2", "gpt2-gated", "llama", "retnet"):
        record_seed(archive, name, f"fp-{name}")
    with pytest.raises(UnknownDesign) as caught:
        archive.get_design("gpt-2")
    message = str(caught.value)
    assert message.startswith("no design named 'gpt-2' in ")
    assert "close names: gpt2, gpt2-gated" in message and "retnet" not in message
    assert isinstance(caught.value, KeyError)
    with pytest.raises(UnknownDesign, match="it holds 4 designs"):
        archive.load_tree_json("zzzzzz")


# ---------------------------------------------------------------------------
# Verifications, costs, events


def verify(archive: Archive, design: str = "gpt2", seed: int = 0, loss: float = 3.1, **kw):
    return archive.record_verification(
        design, rung="14M", seed=seed, corpus_fp="corpus-1", tokenizer_fp="tok-1",
        metrics={"loss": loss}, wall_time_s=12.5, **kw)


def test_verifications_are_recorded_once(archive: Archive):
    record_seed(archive)
    curves = archive.artifacts.put_json({"loss": [4.0, 3.5, 3.1]})
    first = verify(archive, curves_hash=curves, hardware={"gpu": "H100"}, config={"lr": 1e-3})
    assert verify(archive, loss=9.9) == first  # a re-run measurement: the first one stands
    second_seed = verify(archive, seed=1)
    assert archive.verifications() == [first, second_seed]
    assert archive.verifications(design="gpt2", rung="14M") == [first, second_seed]
    assert archive.verifications(rung="70M") == []
    assert archive.artifacts.get_json(first.curves_hash)["loss"][-1] == 3.1
    assert (first.hardware, first.config) == ({"gpu": "H100"}, {"lr": 1e-3})


def test_verification_refuses_bad_input(archive: Archive):
    record_seed(archive)
    with pytest.raises(UnknownDesign):
        verify(archive, design="gpt3")
    with pytest.raises(ArchiveError, match="curves artifact"):
        verify(archive, curves_hash="0" * 64)
    with pytest.raises(ValueError, match="NaN"):
        verify(archive, loss=math.nan)
    assert archive.verifications() == []


def test_costs_are_recorded_once_and_summed(archive: Archive):
    archive.record_cost("call-1", role="proposer", model="m1", prompt_tokens=100,
                        completion_tokens=20, dollars=0.5)
    archive.record_cost("call-1", role="proposer", model="m1", prompt_tokens=100,
                        completion_tokens=20, dollars=0.5)
    archive.record_cost("call-2", role="proposer", model="m1", prompt_tokens=50,
                        dollars=0.25, design="gpt2-a")
    archive.record_cost("job-1", role="verifier", model="-", compute_s=60.0, design="gpt2-a")
    assert archive.cost_summary() == {
        "proposer": {"calls": 2, "prompt_tokens": 150, "completion_tokens": 20,
                     "dollars": 0.75, "compute_s": 0.0},
        "verifier": {"calls": 1, "prompt_tokens": 0, "completion_tokens": 0,
                     "dollars": 0.0, "compute_s": 60.0},
    }
    assert archive.cost_summary(design="gpt2-a")["proposer"]["dollars"] == 0.25
    assert archive.cost_summary(design="none") == {}


def test_events(archive: Archive):
    first = archive.record_event("run_started", {"config": "r1"}, key="start-r1")
    assert archive.record_event("run_started", {"config": "other"}, key="start-r1") == first
    archive.record_event("implemented", {"tries": 2}, design="gpt2-a")
    archive.record_event("implemented", {"tries": 2}, design="gpt2-a")  # no key: two events
    assert len(archive.events()) == 3
    assert [e.payload for e in archive.events(kind="run_started")] == [{"config": "r1"}]
    assert len(archive.events(kind="implemented", design="gpt2-a")) == 2
    assert archive.events(design="gpt2") == []


# ---------------------------------------------------------------------------
# Artifacts


def test_artifacts_are_content_addressed(tmp_path: Path):
    store = ArtifactStore(tmp_path / "artifacts")
    digest = store.put_bytes(b"unit code")
    assert store.put_bytes(b"unit code") == digest
    assert store.path(digest) == tmp_path / "artifacts" / digest[:2] / digest
    assert store.get_bytes(digest) == b"unit code" and store.has(digest)
    assert store.put_json({"b": 1, "a": [1.5, "é"]}) == store.put_json({"a": [1.5, "é"], "b": 1})
    assert canonical_json({"b": 1, "a": 2}) == b'{"a":2,"b":1}'
    files = [p for p in (tmp_path / "artifacts").rglob("*") if p.is_file()]
    assert len(files) == 2  # two contents, no temp files left
    with pytest.raises(MissingArtifact, match="no artifact"):
        store.get_bytes("f" * 64)
    with pytest.raises(ValueError, match="not an artifact hash"):
        store.get_bytes("../../etc/passwd")


def test_failed_artifact_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    store = ArtifactStore(tmp_path)

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        store.put_bytes(b"checkpoint")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


# ---------------------------------------------------------------------------
# Schema versions


def test_newer_schema_is_refused(backend: Backend):
    with backend.open() as archive:
        execute(archive, "UPDATE schema_meta SET schema_version = 3")
    with pytest.raises(ArchiveError) as caught:
        backend.open()
    assert str(caught.value).endswith(
        f"was written by schema v3 (genesys {archive_module._genesys_version()}); "
        "this Genesys knows up to v1 — upgrade genesys")
    assert str(caught.value).startswith("run directory" if backend.name == "sqlite" else "database")


def test_older_schema_without_migration_is_refused(backend: Backend):
    with backend.open() as archive:
        execute(archive, "UPDATE schema_meta SET schema_version = 0")
    with pytest.raises(ArchiveError, match="no migration from schema v0 to v1"):
        backend.open()


def test_older_schema_is_migrated(backend: Backend, monkeypatch: pytest.MonkeyPatch):
    with backend.open() as archive:
        record_seed(archive)
        verify(archive)
    applied = []

    def add_notes(conn):  # what a real v2 migration looks like
        applied.append(2)
        conn.execute(text("ALTER TABLE designs ADD COLUMN notes VARCHAR"))

    monkeypatch.setattr(archive_module, "SCHEMA_VERSION", 2)
    monkeypatch.setattr(archive_module, "MIGRATIONS", {2: add_notes})
    for _ in range(2):  # the second open finds v2 and migrates nothing
        with backend.open() as archive:
            assert archive.get_design("gpt2").fingerprint == "fp-gpt2"
            assert len(archive.verifications(design="gpt2")) == 1
            with archive._engine.connect() as conn:
                assert "notes" in {c["name"] for c in inspect(conn).get_columns("designs")}
                assert conn.execute(text("SELECT schema_version FROM schema_meta")).scalar() == 2
    assert applied == [2]


def test_open_by_sqlite_url(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    with Archive.open(url, artifacts_dir=tmp_path / "art") as archive:
        record_seed(archive)
    with Archive.open(url, artifacts_dir=tmp_path / "art") as archive:
        assert archive.load_tree_json("gpt2") == TREE
        assert archive.location.startswith("database sqlite:///")


# ---------------------------------------------------------------------------
# Several processes, and a process killed mid-run
#
# The writer below runs as a separate process (this file as a script). It
# records the shared seeds and their verifications, then items: a design (child
# of a shared seed), a verification with a curves artifact, a cost and an
# event. Before each item it records that item's parent again, so concurrent
# writers race on the same keys throughout.

SHARED = 10


def write_items(backend: Backend, prefix: str, n: int) -> None:
    with backend.open() as archive:
        for i in range(SHARED):
            record_seed(archive, f"shared-{i}", f"fp-shared-{i}")
            verify(archive, f"shared-{i}")
        for i in range(n):
            shared = f"shared-{(i * 7) % SHARED}"
            record_seed(archive, shared, f"fp-{shared}")
            name = f"{prefix}-{i}"
            archive.record_design(name, {"name": name}, f"fp-{name}", mode="mutation",
                                  status="proposed", parents=[shared])
            curves = archive.artifacts.put_json({"loss": [i, i / 2]})
            verify(archive, name, curves_hash=curves)
            archive.record_cost(f"cost-{name}", role="proposer", model="m", prompt_tokens=1)
            archive.record_event("implemented", {"i": i}, design=name, key=f"event-{name}")
            print(i, flush=True)


def writer(backend: Backend, prefix: str, n: int) -> subprocess.Popen[str]:
    args = [backend.name, backend.target, backend.artifacts_dir or "-", prefix, str(n)]
    return subprocess.Popen([sys.executable, __file__, "write", *args],
                            stdout=subprocess.PIPE, text=True)


def assert_complete(archive: Archive, prefixes: list[str], n: int | None) -> None:
    """Every recorded row is whole; with `n`, exactly the full set is there."""
    designs = {d.name: d for d in archive.list_designs()}
    for design in designs.values():
        assert archive.artifacts.has(design.tree_hash)
        assert archive.load_tree_json(design.name)  # parses: the file is whole
        if design.mode == "mutation":
            assert len(design.parents) == 1 and design.parents[0] in designs
    for v in archive.verifications():
        assert v.curves_hash is None or archive.artifacts.get_json(v.curves_hash)["loss"]
    if n is None:
        return
    assert len(designs) == SHARED + n * len(prefixes)
    assert len(archive.verifications()) == SHARED + n * len(prefixes)
    assert archive.cost_summary()["proposer"]["calls"] == n * len(prefixes)
    assert len(archive.events(kind="implemented")) == n * len(prefixes)


@pytest.mark.timeout(120)
def test_concurrent_writers_lose_and_duplicate_nothing(backend: Backend):
    n, prefixes = 50, ["a", "b", "c"]
    procs = [writer(backend, prefix, n) for prefix in prefixes]
    for proc in procs:
        out, _ = proc.communicate(timeout=100)
        assert proc.returncode == 0, "a writer failed; its traceback is in the captured stderr"
        assert out.split()[-1] == str(n - 1)
    with backend.open() as archive:
        assert_complete(archive, prefixes, n)
        assert {archive.get_design(f"shared-{i}").parents for i in range(SHARED)} == {()}


@pytest.mark.timeout(120)
def test_resume_after_kill(backend: Backend):
    n = 60
    proc = writer(backend, "k", n)
    for line in proc.stdout:
        if int(line) >= 10:
            break
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    with backend.open() as archive:
        done = len(archive.list_designs(mode="mutation"))
        assert 10 < done < n, "the writer was killed mid-run"
        assert_complete(archive, ["k"], None)
        if backend.name == "sqlite":
            with archive._engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
    rerun = writer(backend, "k", n)
    out, _ = rerun.communicate(timeout=100)
    assert rerun.returncode == 0 and out.split()[-1] == str(n - 1)
    with backend.open() as archive:
        assert_complete(archive, ["k"], n)


if __name__ == "__main__" and sys.argv[1] == "write":
    kind, target, artifacts, prefix, count = sys.argv[2:]
    write_items(Backend(kind, target, None if artifacts == "-" else artifacts), prefix, int(count))


@pytest.mark.postgres
def test_a_run_with_a_database_archive_is_read_through_its_run_directory(tmp_path, pg_database):
    """`run --archive URL` records the URL in run.json: every command given the run directory opens that
    database, and the artifacts stay in RUN_DIR/artifacts (not in the current directory)."""
    import json

    from typer.testing import CliRunner

    import cli
    from designs.catalog import open_archive, recorded_archive_url

    url = pg.fresh_schema(pg_database)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text(json.dumps({"format": 1, "ladder": "cpu", "archive": url}))
    assert recorded_archive_url(run_dir) == url
    with open_archive(run_dir) as opened:
        assert opened.artifacts.root == (run_dir / "artifacts").absolute()
        assert opened.get_design("gpt2").status == "seed"
    with Archive.open(url, artifacts_dir=run_dir / "artifacts") as direct:
        assert direct.get_design("gpt2").fingerprint  # the seeds went to the database
    assert not (run_dir / "archive.db").exists()
    result = CliRunner().invoke(cli.app, ["show", "gpt2", "--run-dir", str(run_dir), "--markdown"])
    assert result.exit_code == 0, result.output
    assert "gpt2" in result.output
    assert not (run_dir / "archive.db").exists()
