"""Verification workers: where the evolution's verification jobs run.

    pool = pool_for(run.ray, run.workers)                  # LocalPool, or RayPool when --ray ADDRESS
    results = pool.run(jobs, archive, emit=on_event)        # one dict per job, in order

A `VerificationJob` names everything one verification needs (design and its tree,
ladder, rung, seed, scale, corpus, threads, run directory, archive location) and
pickles, so it runs the same in a thread of this process (`LocalPool`, bounded by
`--workers`) or as a Ray task on another machine (`RayPool`). Either way
`run_verification` does the work: skip what the archive already holds, verify the
design in the sandbox (`verify_design`), record the result, or record a
`verification_failed` event, so that a resumed run does not try it again.

Ray (the `distributed` extra) runs each job as a task that asks for the rung's
resources: one GPU on the gpu ladder, `threads` CPUs. The workers get this
repository's code through Ray's runtime environment (`working_dir`: the checkout is
uploaded once per run, .gitignore'd paths left out) and run it in their own Python,
which must have the project's dependencies (`pip install -e '.[distributed]'` on
every node). The run directory's path (checkpoints, token caches) must be writable
on every node, ideally a shared filesystem mounted at the same path; the archive
must be one every node reaches, so several machines need `--archive postgresql://...`.

A worker that dies (killed, out of memory, its node lost) fails only its job, which
is recorded as failed with the reason; a cluster that goes away stops the run with
`WorkerError` (every verification that finished is already in the archive, so the
run resumes cleanly once the cluster is back).
"""

from __future__ import annotations

import contextvars
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from designs.archive import Archive
from designs.catalog import resolve
from designs.tree import UnitTree
from verifier.verify import verify_design

REPO = Path(__file__).resolve().parents[1]
INSTALL_HINT = "install the distributed extra: pip install -e '.[distributed]'"
# What Ray need not upload to the workers besides .gitignore'd paths (and .git, .venv): run data.
UPLOAD_EXCLUDES = ["runs", "*.sqlite", "*.sqlite-*", "*.db", "*.db-*"]

Emit = Callable[[dict], None]


class WorkerError(RuntimeError):
    """The workers cannot run jobs: Ray missing, the cluster unreachable or gone."""


@dataclass(frozen=True)
class VerificationJob:
    """One verification: a design on one rung of a ladder with one training seed."""

    design: str
    ladder: str
    rung: str
    seed: int = 0
    scale: float = 1.0  # training tokens of the rung times this
    corpus: str | None = None  # language-modeling rungs train on this corpus instead of the rung's
    threads: int = 2  # torch threads of the training job (and CPUs asked of Ray)
    run_dir: str = "runs/default"  # checkpoints and token caches; absolute for remote workers
    archive: str = ""  # a run directory or a database URL; empty: run_dir
    tree: dict | None = None  # the design's unit tree, so a worker needs no copy of the run's artifacts

    @property
    def rung_key(self) -> str:
        """How the archive names the rung (ladder/rung)."""
        return f"{self.ladder}/{self.rung}"

    @property
    def location(self) -> str:
        return self.archive or self.run_dir

    def summary(self, status: str, error: str = "", wall_s: float = 0.0) -> dict:
        return {"design": self.design, "rung": self.rung, "seed": self.seed, "status": status, "error": error,
                "wall_s": wall_s}


def finished_seeds(archive: Archive, design: str, rung_key: str) -> set[int]:
    """Training seeds of `design` at `rung_key` already verified, or already recorded as failed."""
    done = {v.seed for v in archive.verifications(design=design, rung=rung_key)}
    failed = {e.payload.get("seed") for e in archive.events(kind="verification_failed", design=design)
              if e.payload.get("rung") == rung_key}
    return done | failed


def is_finished(archive: Archive, job: VerificationJob) -> bool:
    return job.seed in finished_seeds(archive, job.design, job.rung_key)


def record_failure(archive: Archive, job: VerificationJob, status: str, error: str) -> None:
    """The failure goes in the archive (idempotent key), so a resumed run does not try it again."""
    archive.record_event("verification_failed", {"rung": job.rung_key, "seed": job.seed, "status": status,
                                                 "error": error},
                         design=job.design, key=f"verify-failed:{job.design}:{job.rung_key}:{job.seed}")


def run_verification(job: VerificationJob, archive: Archive | None = None, emit: Emit | None = None) -> dict:
    """Verify one design on one rung, unless the archive already has it (or its recorded failure).

    `archive`: the run's open archive (local workers share the driver's); None opens the job's
    archive location (a remote worker). `emit` receives the verify, verify_progress and verified events.
    """
    archive = archive if archive is not None else worker_archive(job)
    if is_finished(archive, job):
        return job.summary("done")
    emit = emit or (lambda event: None)
    emit({"event": "verify", "design": job.design, "rung": job.rung, "seed": job.seed})
    tree = UnitTree.from_dict(job.tree) if job.tree is not None else resolve(job.design, archive)
    run_dir = Path(job.run_dir)
    result = verify_design(tree, job.ladder, job.rung, run_dir, seed=job.seed, scale=job.scale, check=False,
                           archive=archive, cache_dir=run_dir / "cache", threads=job.threads, corpus=job.corpus,
                           progress=lambda p: emit({"event": "verify_progress", "design": job.design,
                                                    "rung": job.rung, **p}))
    if result.status not in ("ok", "diverged"):  # ok/diverged are recorded by verify_design
        record_failure(archive, job, result.status, result.error)
    summary = job.summary(result.status, result.error, result.wall_s)
    emit({"event": "verified", **summary})
    return summary


_worker_archives: dict[str, Archive] = {}
_worker_lock = threading.Lock()


def worker_archive(job: VerificationJob) -> Archive:
    """The job's archive, opened once per worker process (artifacts beside the run directory)."""
    with _worker_lock:
        if job.location not in _worker_archives:
            artifacts = None if job.location == job.run_dir else Path(job.run_dir) / "artifacts"
            _worker_archives[job.location] = Archive.open(job.location, artifacts_dir=artifacts)
        return _worker_archives[job.location]


# ---------------------------------------------------------------- local


class LocalPool:
    """Verifications `workers` at a time in threads of this process (each job is a sandboxed process)."""

    def __init__(self, workers: int = 1):
        self.workers = max(1, workers)

    def run(self, jobs: list[VerificationJob], archive: Archive, emit: Emit | None = None) -> list[dict]:
        if len(jobs) == 1:
            return [run_verification(jobs[0], archive, emit)]
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            # each job carries a copy of the caller's context, so its events reach the graph's stream
            futures = [pool.submit(contextvars.copy_context().run, run_verification, job, archive, emit)
                       for job in jobs]
            return [f.result() for f in futures]

    def close(self) -> None:
        pass


# ---------------------------------------------------------------- Ray


def import_ray():
    try:
        import ray
    except ImportError:
        raise WorkerError(f"--ray needs Ray, which is not installed here; {INSTALL_HINT}") from None
    return ray


def resources(job: VerificationJob) -> dict:
    """What a job asks of the cluster: a GPU on the gpu ladder (or a rung that asks for GPUs), its CPUs."""
    from verifier.ladder import get_rung

    gpus = getattr(get_rung(job.ladder, job.rung), "gpus", None)
    if gpus is None:
        gpus = 1 if job.ladder == "gpu" else 0
    return {"num_cpus": job.threads, "num_gpus": gpus}


def _remote_verification(job: VerificationJob) -> dict:
    """The body of a Ray task: one verification on whichever node the cluster chose."""
    return run_verification(job)


class RayPool:
    """Verification jobs as Ray tasks on the cluster at `address`, at most `max_in_flight` at once.

    `lost_after_s`: how long the cluster's head may stay unreachable before the run stops.
    """

    def __init__(self, address: str, *, max_in_flight: int | None = None, lost_after_s: float = 20.0):
        self.ray = import_ray()
        self.address = address
        self.lost_after_s = lost_after_s
        self._connect()
        cpus = int(self.ray.cluster_resources().get("CPU", 1))
        self.max_in_flight = max(1, max_in_flight or cpus)
        self._largest = self._largest_node()
        self._slots = threading.BoundedSemaphore(self.max_in_flight)
        self._task = self.ray.remote(max_retries=0)(_remote_verification)
        self._broken: str | None = None

    def _connect(self) -> None:
        if self.ray.is_initialized():
            raise WorkerError("Ray is already connected in this process; one RayPool per process")
        head = _head(self.address)
        if head is not None and not _reachable(*head):
            raise WorkerError(f"cannot reach the Ray cluster at {self.address}: nothing listens there; "
                              "start it with `ray start --head` (and workers with `ray start --address ...`)")
        try:
            self.ray.init(address=self.address, log_to_driver=False, configure_logging=False,
                          runtime_env={"working_dir": str(REPO), "excludes": UPLOAD_EXCLUDES})
        except (ConnectionError, TimeoutError, self.ray.exceptions.RayError, ValueError) as e:
            raise WorkerError(f"cannot connect to the Ray cluster at {self.address}: {_first_line(e)}") from None

    def run(self, jobs: list[VerificationJob], archive: Archive, emit: Emit | None = None) -> list[dict]:
        """Submit the jobs the archive lacks (bounded), wait for them, record workers that died."""
        emit = emit or (lambda event: None)
        results: list[dict | None] = [job.summary("done") if is_finished(archive, job) else None for job in jobs]
        in_flight: dict = {}  # object ref -> index into jobs
        try:
            for i, job in enumerate(jobs):
                if results[i] is not None:
                    continue
                options = self._fit(job)
                while not self._slots.acquire(timeout=0.2):
                    self._collect(in_flight, jobs, results, archive, emit)
                in_flight[self._task.options(**options).remote(job)] = i
                emit({"event": "verify", "design": job.design, "rung": job.rung, "seed": job.seed})
            while in_flight:
                self._collect(in_flight, jobs, results, archive, emit)
        finally:
            for _ in in_flight:  # only when stopping on an error: those slots are not coming back
                self._slots.release()
        return results

    def _largest_node(self) -> dict:
        alive = [n.get("Resources", {}) for n in self.ray.nodes() if n.get("Alive")]
        return {key: max((n.get(key, 0) for n in alive), default=0) for key in ("CPU", "GPU")}

    def _fit(self, job: VerificationJob) -> dict:
        """The job's resources, its CPUs capped at the largest node's; a GPU job on a cluster without
        GPUs is an error now rather than a task that waits forever."""
        wanted = resources(job)
        if wanted["num_gpus"] > self._largest["GPU"]:
            self._largest = self._largest_node()  # nodes may have joined since
        if wanted["num_gpus"] > self._largest["GPU"]:
            raise WorkerError(f"{job.rung_key} needs {wanted['num_gpus']} GPU(s) per job; no node of the Ray "
                              f"cluster at {self.address} has that many")
        return {**wanted, "num_cpus": min(wanted["num_cpus"], max(1, int(self._largest["CPU"])))}

    def _collect(self, in_flight: dict, jobs, results, archive: Archive, emit: Emit) -> None:
        """Wait a moment for any of this caller's jobs; record what finished."""
        if self._broken:
            raise WorkerError(self._broken)
        if not in_flight:
            return
        ready, _ = self.ray.wait(list(in_flight), num_returns=1, timeout=1.0)
        if not ready:
            self._check_cluster()
            return
        for ref in ready:
            index = in_flight.pop(ref)
            self._slots.release()
            results[index] = summary = self._outcome(ref, jobs[index], archive)
            emit({"event": "verified", **summary})

    def _outcome(self, ref, job: VerificationJob, archive: Archive) -> dict:
        errors = self.ray.exceptions
        try:
            return self.ray.get(ref)
        except errors.RayTaskError as e:  # the job raised: its error, not the cluster's
            reason = f"worker error: {_first_line(getattr(e, 'cause', None) or e)}"
        except (errors.WorkerCrashedError, errors.NodeDiedError, errors.OutOfMemoryError,
                errors.TaskUnschedulableError, errors.ObjectLostError) as e:
            self._check_cluster()
            reason = f"worker died: {_first_line(e)}"
        except errors.RayError as e:  # a runtime environment a node could not set up, say
            self._check_cluster()
            reason = f"ray: {_first_line(e)}"
        if is_finished(archive, job):  # the worker recorded its result before it went
            return job.summary("done")
        record_failure(archive, job, "worker_failed", reason)
        return job.summary("worker_failed", reason)

    def _check_cluster(self) -> None:
        """Raise WorkerError when the cluster's head has been unreachable for `lost_after_s`."""
        head = _head(self.address)
        if head is None:
            return
        deadline = time.monotonic() + self.lost_after_s
        while not _reachable(*head):
            if time.monotonic() > deadline:
                self._broken = (f"the Ray cluster at {self.address} went away; verifications that finished are "
                                "in the archive: resume the run with --resume RUN_DIR once the cluster is back")
                raise WorkerError(self._broken)
            time.sleep(1.0)

    def close(self) -> None:
        if self.ray.is_initialized() and not self._broken:
            self.ray.shutdown()


def _head(address: str) -> tuple[str, int] | None:
    """(host, port) of the cluster's head in HOST:PORT, or None for addresses Ray resolves itself."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or "://" in address:
        return None
    return host, int(port)


def _reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2.0).close()
        return True
    except OSError:
        return False


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0][:300]}" if lines else type(error).__name__


# ---------------------------------------------------------------- choosing a pool

_pools: dict[str, RayPool] = {}
_pools_lock = threading.Lock()


def pool_for(ray_address: str | None, workers: int) -> LocalPool | RayPool:
    """The run's pool: threads of this process, or the Ray cluster (connected once per process)."""
    if not ray_address:
        return LocalPool(workers)
    with _pools_lock:
        if ray_address not in _pools:
            _pools[ray_address] = RayPool(ray_address)
        return _pools[ray_address]


def close_pools() -> None:
    """Disconnect from the Ray cluster (the CLI and tests call this when the run ends)."""
    with _pools_lock:
        for pool in _pools.values():
            pool.close()
        _pools.clear()


__all__ = ["LocalPool", "RayPool", "VerificationJob", "WorkerError", "close_pools", "finished_seeds",
           "pool_for", "record_failure", "resources", "run_verification"]
