"""Tests of the verification workers (graph/workers.py): local threads and a real Ray cluster.

The Ray tests (marked slow: a few minutes on 2 busy cores) start a one-node cluster on 127.0.0.1 (`ray start --head --block` in its own
process group, stopped by killing that group) and run real, tiny verifications (one
training step of GPT-2 on lm-xs) through `RayPool`: into a PostgreSQL archive
(tests/pg.py) and into a SQLite run directory, with a worker killed in the middle of a job
and a cluster that goes away.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pg
import psutil
import pytest

from designs.archive import Archive
from designs.catalog import open_archive
from designs.seeds import load_seed
from graph import nodes, workers
from graph.evolution import RunConfig, RunError, run_evolution, verify_many
from graph.workers import LocalPool, RayPool, VerificationJob, WorkerError, resources

pytest.importorskip("ray")

RAY = Path(sys.executable).with_name("ray")
SCALE = 0.004  # lm-xs at this scale trains one step


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Cluster:
    address: str
    head: subprocess.Popen  # `ray start --head --block`, leader of the cluster's process group


@contextmanager
def ray_cluster(cpus: int = 2) -> Iterator[Cluster]:
    """A one-node Ray cluster of our own. Stopped by killing its process group."""
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    port = free_port()
    command = [str(RAY), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
               f"--num-cpus={cpus}", "--num-gpus=0", "--include-dashboard=false", "--disable-usage-stats",
               f"--temp-dir={temp}", f"--ray-client-server-port={free_port()}", f"--dashboard-port={free_port()}",
               f"--dashboard-agent-listen-port={free_port()}", f"--metrics-export-port={free_port()}"]
    with open(temp / "head.log", "wb") as log:
        head = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not workers._reachable("127.0.0.1", port):
            if head.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray start failed:\n{(temp / 'head.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield Cluster(f"127.0.0.1:{port}", head)
    finally:
        stop_group(head)
        subprocess.run(["rm", "-rf", str(temp)], check=False)


def stop_group(process: subprocess.Popen) -> None:
    """Stop the processes we started: the head's group, politely and then for good."""
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue


def job(run_dir: Path, archive: str = "", design: str = "gpt2", seed: int = 0, tree: dict | None = None):
    tree = tree if tree is not None else load_seed(design).to_dict()
    return VerificationJob(design, "cpu", "lm-xs", seed=seed, scale=SCALE, threads=1, run_dir=str(run_dir),
                           archive=archive, tree=tree)


def training_started(job: VerificationJob) -> Path:
    """The file verify_design writes just before the training job starts."""
    return Path(job.run_dir) / "verify" / job.design / f"{job.ladder}-{job.rung}" / f"seed{job.seed}" / "design.py"


def wait_for(path: Path, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear within {timeout} s")
        time.sleep(0.2)


def kill_task_worker(job: VerificationJob, name: str = "_remote_verification") -> int:
    """Once the job is training, SIGKILL the Ray worker process running it (titled ray::NAME)."""
    wait_for(training_started(job))
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if f"ray::{name}" in " ".join(proc.info["cmdline"] or []):
            proc.kill()
            return proc.info["pid"]
    raise AssertionError(f"no Ray worker runs {name}")


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with ray_cluster() as started:
        yield started


@pytest.fixture(scope="module")
def pool(cluster) -> Iterator[RayPool]:
    """The process's connection to the cluster, the one a run with --ray ADDRESS uses too."""
    yield workers.pool_for(cluster.address, 1)
    workers.close_pools()


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with ExitStack() as stack:
        try:
            server = stack.enter_context(pg.server())
        except pg.Unavailable as e:
            pytest.skip(str(e))
        yield stack.enter_context(pg.fresh_database(server))


# ---------------------------------------------------------------- tests without a cluster


def test_resources_follow_the_ladder(tmp_path):
    cpu = job(tmp_path)
    assert resources(cpu) == {"num_cpus": 1, "num_gpus": 0}
    gpu = VerificationJob("gpt2", "gpu", "14M", threads=4, run_dir=str(tmp_path))
    assert resources(gpu) == {"num_cpus": 4, "num_gpus": 1}


def test_job_pickles_with_its_tree(tmp_path):
    import pickle

    original = job(tmp_path, archive="postgresql+psycopg://host/db")
    copy = pickle.loads(pickle.dumps(original))
    assert copy == original and copy.tree["name"] == "gpt2" and copy.rung_key == "cpu/lm-xs"


def test_without_ray_the_message_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where it is not installed
    with pytest.raises(WorkerError, match=r"pip install -e '\.\[distributed\]'"):
        RayPool("127.0.0.1:6379")
    with pytest.raises(WorkerError, match="distributed"):
        workers.pool_for("127.0.0.1:6379", 1)


def test_unreachable_cluster_is_a_clear_error():
    with pytest.raises(WorkerError, match=r"cannot reach the Ray cluster at 127\.0\.0\.1:\d+.*ray start --head"):
        RayPool(f"127.0.0.1:{free_port()}")


def test_a_run_on_an_unreachable_cluster_stops_with_a_run_error(tmp_path):
    run = RunConfig(ray=f"127.0.0.1:{free_port()}", budget={"designs": 1})
    with pytest.raises(RunError, match="cannot reach the Ray cluster"):
        verify_many([("gpt2", "lm-xs", 0)], None, tmp_path, run)


def test_verify_many_builds_jobs_and_skips_what_is_done(tmp_path):
    """The evolution's verify_many goes through the pool: finished work is not run again."""
    run_dir = tmp_path / "run"
    archive = open_archive(run_dir)
    try:
        for seed in (0, 1):
            archive.record_verification("gpt2", rung="cpu/lm-xs", seed=seed, corpus_fp="c", tokenizer_fp="t",
                                        metrics={"bpb": 2.0}, wall_time_s=1.0)
        run = RunConfig(rungs=["lm-xs"], budget={"designs": 1}, workers=2)
        results = verify_many([("gpt2", "lm-xs", 0), ("gpt2", "lm-xs", 1)], archive, run_dir, run)
        assert [(r["design"], r["seed"], r["status"]) for r in results] == [("gpt2", 0, "done"), ("gpt2", 1, "done")]
        assert len(archive.verifications()) == 2
    finally:
        archive.close()


def test_local_pool_skips_what_the_archive_holds_and_records_failures(tmp_path):
    """A finished verification is not run again; a failed one is recorded once and not retried."""
    run_dir = tmp_path / "run"
    archive = open_archive(run_dir)
    try:
        broken = load_seed("gpt2").to_dict()
        broken["name"] = "broken"
        block = broken["units"]["GPT2Block"]  # sizes fine, fails as soon as it trains
        block["code"] = block["code"].replace(
            "        H, Z = self.norm1(X, **Z)\n",
            "        if torch.is_grad_enabled():\n            raise RuntimeError('this block cannot train')\n"
            "        H, Z = self.norm1(X, **Z)\n", 1)
        archive.record_design("broken", broken, "fp-broken", mode="mutation", status="implemented",
                              parents=["gpt2"])
        events = []
        jobs = [job(run_dir, design="broken", tree=broken), job(run_dir, design="broken", tree=broken)]
        first = LocalPool(2).run(jobs[:1], archive, emit=events.append)
        assert first[0]["status"] == "failed" and "cannot train" in first[0]["error"], first
        [failure] = archive.events(kind="verification_failed", design="broken")
        assert failure.payload["rung"] == "cpu/lm-xs" and failure.payload["seed"] == 0
        assert [e["event"] for e in events if e["event"] in ("verify", "verified")] == ["verify", "verified"]
        again = LocalPool(2).run(jobs, archive)
        assert [r["status"] for r in again] == ["done", "done"]
        assert len(archive.events(kind="verification_failed", design="broken")) == 1
    finally:
        archive.close()


def test_archive_for_honours_the_archive_setting(tmp_path, monkeypatch, pg_url):
    monkeypatch.chdir(tmp_path)
    url = pg.fresh_schema(pg_url)
    config = {"configurable": {"run_dir": str(tmp_path / "run"), "archive": url}}
    try:
        archive = nodes.archive_for(config)
        assert archive.location.startswith("database ")
        assert nodes.archive_for({"configurable": {"run_dir": str(tmp_path / "run")}}) is archive
        assert "gpt2" in {d.name for d in archive.list_designs()}
        assert not (tmp_path / "run" / "archive.db").exists()
        # the evolution's nodes carry the run settings, whose "archive" counts the same
        other = nodes.archive_for({"configurable": {"run_dir": str(tmp_path / "other"), "run": {"archive": url}}})
        assert other.location == archive.location and not (tmp_path / "other" / "archive.db").exists()
    finally:
        nodes.close_archives()


# ---------------------------------------------------------------- on a Ray cluster


@pytest.mark.slow
@pytest.mark.postgres
def test_ray_verifies_into_postgres(pool, pg_url, tmp_path):
    url = pg.fresh_schema(pg_url)
    run_dir = tmp_path / "run"
    with Archive.open(url, artifacts_dir=run_dir / "artifacts") as archive:
        archive.record_design("gpt2", load_seed("gpt2").to_dict(), load_seed("gpt2").fingerprint(), mode="seed",
                              status="seed")
        events = []
        results = pool.run([job(run_dir, url, seed=0), job(run_dir, url, seed=1)], archive, emit=events.append)
        assert [r["status"] for r in results] == ["ok", "ok"], results
        rows = archive.verifications(design="gpt2", rung="cpu/lm-xs")
        assert sorted(r.seed for r in rows) == [0, 1]
        assert all(r.metrics["bpb"] > 0 and r.metrics["steps"] == 1 for r in rows)
        assert sorted(e["event"] for e in events) == ["verified", "verified", "verify", "verify"]
        # the same jobs again: nothing is submitted, nothing is duplicated
        assert [r["status"] for r in pool.run([job(run_dir, url, seed=0)], archive)] == ["done"]
        assert len(archive.verifications(design="gpt2")) == 2


@pytest.mark.slow
def test_ray_verifies_into_a_run_directory_and_survives_a_killed_worker(pool, tmp_path):
    run_dir = tmp_path / "run"
    archive = open_archive(run_dir)
    try:
        location = str(run_dir.absolute())
        doomed = job(run_dir, location, seed=7)
        import threading

        killer = threading.Thread(target=kill_task_worker, args=(doomed,))
        killer.start()
        [lost] = pool.run([doomed], archive)
        killer.join()
        assert lost["status"] == "worker_failed" and "died" in lost["error"], lost
        [failure] = archive.events(kind="verification_failed", design="gpt2")
        assert failure.payload["seed"] == 7 and failure.payload["status"] == "worker_failed"
        assert not archive.verifications(design="gpt2")
        # the pool goes on: the next job runs, and the failed one is not retried
        results = pool.run([doomed, job(run_dir, location, seed=0)], archive)
        assert [r["status"] for r in results] == ["done", "ok"], results
        [row] = archive.verifications(design="gpt2", rung="cpu/lm-xs")
        assert row.seed == 0 and row.metrics["bpb"] > 0
    finally:
        archive.close()


@pytest.mark.slow
@pytest.mark.postgres
def test_an_evolution_run_verifies_on_the_cluster_into_postgres(pool, cluster, pg_url, tmp_path, monkeypatch):
    """`python cli.py run --ray ADDRESS --archive URL` in small: the baselines and the design are
    verified by Ray workers, and every row, the design session's included, lands in PostgreSQL."""
    monkeypatch.chdir(tmp_path)
    url = pg.fresh_schema(pg_url)
    run_dir = tmp_path / "run"
    run = RunConfig(rungs=["lm-xs"], scale=SCALE, budget={"designs": 1}, ray=cluster.address, archive=url,
                    design={"check": {"efficiency": False, "train_steps": 10,
                                      "extra": {"batch_size": 4, "train_seq_len": 32}}})
    events: list[dict] = []
    try:
        final = run_evolution(run_dir, run, on_event=events.append)
    finally:
        nodes.close_archives()
    (session,) = final["sessions"]
    verified = [e for e in events if e["event"] == "verified"]
    assert session["outcome"] == "implemented" and session["verification"] == "ok", (session, verified)
    with Archive.open(url, artifacts_dir=tmp_path / "artifacts") as archive:
        runs = {(v.design, v.rung, v.seed) for v in archive.verifications()}
        assert runs == {("gpt2", "cpu/lm-xs", 0), ("gpt2", "cpu/lm-xs", 1), ("gpt2", "cpu/lm-xs", 2),
                        (session["name"], "cpu/lm-xs", 0)}
        assert archive.get_design(session["name"]).status == "implemented"
    assert not (run_dir / "archive.db").exists()
    assert sum(e["event"] == "verified" for e in events) == 4


@pytest.mark.slow
def test_a_cluster_that_goes_away_stops_the_run_and_leaves_the_archive_consistent(tmp_path):
    """The driver (a process of its own, as a run is) gets a clear error; the archive has no row
    and no failure for the lost job, so a resumed run verifies it again."""
    run_dir = tmp_path / "run"
    lost = job(run_dir, str(run_dir.absolute()), seed=3)
    with ray_cluster() as cluster:
        driver = subprocess.Popen([sys.executable, __file__, "drive", cluster.address, str(run_dir)],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
        try:
            wait_for(training_started(lost))
            stop_group(cluster.head)
            output, _ = driver.communicate(timeout=180)
        finally:
            driver.kill()
    assert driver.returncode == 3, output
    assert "went away" in output and "--resume" in output, output
    with Archive.open(run_dir) as archive:
        assert not archive.verifications(design="gpt2")
        assert not archive.events(kind="verification_failed")


def drive(address: str, run_dir: str) -> int:
    """A driver for the lost-cluster test: one job through a RayPool; exit 3 on WorkerError."""
    archive = open_archive(run_dir)
    pool = RayPool(address, lost_after_s=3)
    try:
        print(pool.run([job(Path(run_dir), str(Path(run_dir).absolute()), seed=3)], archive), flush=True)
        return 0
    except WorkerError as e:
        print(f"WorkerError: {e}", flush=True)
        return 3
    finally:
        archive.close()


if __name__ == "__main__" and sys.argv[1:2] == ["drive"]:
    os._exit(drive(*sys.argv[2:4]))  # not sys.exit: Ray's exit hooks would wait for the lost cluster
