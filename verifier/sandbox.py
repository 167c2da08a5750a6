"""The sandbox: run untrusted design code in a child process and get a structured result.

Design code (a coder's output above all) never runs in the main process. `run_job`
starts `verifier.sandbox_child` in a new session and sends it the job on stdin:
the composed design source, an entry point (`verifier.entries`: "check", "measure",
"exec", later "train"/"evaluate") and its arguments. The child (see verifier.jail)
enters new network, mount and PID namespaces, makes the filesystem read-only but for
a size-capped tmpfs working directory (and an optional output directory), sets
resource limits, drops root to an unprivileged uid, strips secrets from the
environment, and runs the job as PID 1 of its namespace, so that killing it kills
every process the design started.

    result = run_job("check", source=tree.compose(), name=tree.name, args={...})
    result.status   # ok | exception | timeout | out_of_memory | killed | crashed | nonfinite
    result.payload  # the entry point's JSON reply when ok
    result.error, result.traceback  # one line; the design's own frames with unit lines

The caller is never blocked past the timeout: the whole process group is killed
and the result says so. Captured stdout/stderr keep their first and last bytes up
to a bound; a design that writes more than `max_output_mb` is killed.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from verifier.jail import WORKDIR

STATUSES = ("ok", "exception", "timeout", "out_of_memory", "killed", "crashed", "nonfinite")
SECRET = re.compile(
    r"(API_KEY|APIKEY|_TOKEN|TOKEN_|_SECRET|SECRET_|PASSWORD|PASSWD|CREDENTIAL|_AUTH|PRIVATE_KEY|SESSION_KEY)"
    r"|^(AWS|GOOGLE|GCLOUD|GCP|AZURE|OPENAI|ANTHROPIC|COHERE|HF_TOKEN|HUGGING|S2_|SEMANTIC|WANDB|PINECONE|GITHUB"
    r"|GH_|GITLAB|SSH_|GPG_|DATABASE_URL|PG|MYSQL|REDIS|RAY_ADDRESS|GENESYS_DB)",
    re.IGNORECASE,
)
# Variables a design's process may see, whatever the caller has (the rest is dropped).
PASSED_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES",
              "NVIDIA_VISIBLE_DEVICES", "CUDA_HOME", "LD_LIBRARY_PATH")
ROOT = str(Path(__file__).resolve().parents[1])
_BOOT = "import sys; sys.path.insert(0, sys.argv[1]); from verifier.sandbox_child import main; main()"


@dataclass
class Limits:
    """What a job may use. Every limit can be set; the defaults suit a CPU check."""

    timeout_s: float = 300.0  # wall clock; then the whole process group is killed
    memory_mb: int | None = 8192  # data segment (heap and anonymous maps: what tensors take)
    cpu_s: float | None = None  # CPU seconds over all threads; None: threads x timeout
    max_procs: int = 64  # processes and threads of the sandbox's uid
    file_size_mb: int = 64  # largest file it may write
    workdir_mb: int = 512  # its tmpfs working directory
    output_bytes: int = 32_768  # kept of stdout and of stderr (head and tail)
    max_output_mb: int = 64  # more than this on stdout + stderr: killed
    threads: int = 2  # torch / BLAS / OpenMP threads
    network: bool = False  # True only for jobs that must download (never design checks)
    isolate: bool = True  # False runs without namespaces (still a child process, limits and env)

    def config(self) -> dict:
        cpu = self.cpu_s if self.cpu_s is not None else max(10.0, self.timeout_s * max(1, self.threads))
        return {"memory_mb": self.memory_mb, "cpu_s": cpu, "max_procs": self.max_procs,
                "file_size_mb": self.file_size_mb, "workdir_mb": self.workdir_mb, "network": self.network,
                "isolate": self.isolate}


@dataclass
class SandboxResult:
    """How a job ended. `status` is one of STATUSES; `payload` is set only when ok."""

    status: str
    payload: dict | None = None
    error: str = ""
    traceback: str = ""
    frames: list = field(default_factory=list)
    exit_code: int | None = None  # negative: killed by that signal
    stdout: str = ""
    stderr: str = ""
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    wall_s: float = 0.0
    cpu_s: float | None = None
    max_rss_mb: float | None = None
    isolation: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        """One line for logs and for a coder."""
        if self.ok:
            return f"ok in {self.wall_s:.1f} s"
        return f"{self.status}: {self.error}"


class _Capture:
    """Keeps the first and last `limit` bytes of a stream and counts the rest."""

    def __init__(self, limit: int):
        self.limit, self.total = limit, 0
        self.head, self.tail = bytearray(), bytearray()

    def add(self, data: bytes) -> None:
        self.total += len(data)
        room = self.limit - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail = (self.tail + data)[-self.limit:]

    def text(self) -> str:
        skipped = self.total - len(self.head) - len(self.tail)
        middle = f"\n[... {skipped} bytes not kept ...]\n" if skipped > 0 else ""
        return (bytes(self.head).decode(errors="replace") + middle + bytes(self.tail).decode(errors="replace"))


def clean_env(threads: int = 2, extra: dict | None = None) -> dict:
    """The environment a design sees: a short allow-list, no secrets, thread counts set."""
    env = {k: v for k, v in os.environ.items() if k in PASSED_ENV and not SECRET.search(k)}
    env.update({
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "OPENBLAS_NUM_THREADS": str(threads),
        "GENESYS_THREADS": str(threads),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        # The job's uid has no passwd entry: libraries that ask who they are (getpass.getuser,
        # expanduser for cache folders; torch does both on CUDA machines) read these instead.
        "USER": "genesys-sandbox",
        "LOGNAME": "genesys-sandbox",
        "HOME": WORKDIR,
    })
    env.update({k: v for k, v in (extra or {}).items() if not SECRET.search(k)})
    return env


def _readable_paths() -> list[str]:
    """What the job's interpreter must be able to read: Python, its packages, this project."""
    import sysconfig

    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, ROOT,
             os.path.realpath(sys.executable)}
    paths.update(sysconfig.get_paths().values())
    paths.update(p for p in sys.path if p and os.path.isdir(p))
    return sorted(p for p in paths if p and os.path.exists(p))


def run_job(entry: str, source: str | None = None, *, name: str = "design", args: dict | None = None,
            limits: Limits | None = None, line_map: dict | None = None, output_dir: str | os.PathLike | None = None,
            env: dict | None = None, uid: int | None = None,
            read_paths: list[str | os.PathLike] | None = None) -> SandboxResult:
    """Run one job in a fresh sandboxed child process and wait for it (at most the timeout).

    entry: a name in `verifier.entries.ENTRIES`. source: design module source (run
    only in the child). line_map: composed line -> (unit, unit line), from
    `UnitTree.compose_with_map`, so tracebacks name the unit. output_dir: a directory
    the job may write (mounted at /tmp/out). env: extra variables (secrets are dropped).
    read_paths: files or directories the job must read (say, token shards in a cache
    under a home directory); they stay visible read-only at their own paths.
    """
    limits = limits or Limits()
    config = limits.config()
    config["uid"] = uid if uid is not None else 60000 + os.getpid() % 5000
    config["readable_paths"] = _readable_paths() + [str(Path(p).resolve()) for p in read_paths or []]
    if output_dir is not None:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        config["output_dir"] = str(Path(output_dir).resolve())
    read_fd, write_fd = os.pipe()
    request = {"entry": entry, "source": source, "name": name, "args": args or {}, "config": config,
               "line_map": {str(k): v for k, v in (line_map or {}).items()},
               "env": clean_env(limits.threads, env), "result_fd": write_fd, "parent_pid": os.getpid()}
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-I", "-c", _BOOT, ROOT], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, pass_fds=(write_fd,), start_new_session=True, cwd="/",
        env=clean_env(limits.threads),
    )
    os.close(write_fd)
    try:
        proc.stdin.write(json.dumps(request).encode())
        proc.stdin.close()
    except BrokenPipeError:
        pass
    outcome = _wait(proc, read_fd, limits, started)
    outcome.wall_s = round(time.monotonic() - started, 3)
    return outcome


def _wait(proc: subprocess.Popen, result_fd: int, limits: Limits, started: float) -> SandboxResult:
    out, err, messages = _Capture(limits.output_bytes), _Capture(limits.output_bytes), bytearray()
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, out)
    sel.register(proc.stderr, selectors.EVENT_READ, err)
    result_pipe = os.fdopen(result_fd, "rb", buffering=0)
    sel.register(result_pipe, selectors.EVENT_READ, messages)
    deadline = started + limits.timeout_s
    killed_for, exited_at = None, None
    open_streams = 3
    while open_streams:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            killed_for = "timeout"
            break
        for key, _ in sel.select(timeout=min(remaining, 0.5)):
            data = os.read(key.fileobj.fileno(), 1 << 16)
            if not data:
                sel.unregister(key.fileobj)
                open_streams -= 1
            elif key.data is messages:
                messages += data
            else:
                key.data.add(data)
        if out.total + err.total > limits.max_output_mb << 20:
            killed_for = "output"
            break
        if open_streams and proc.poll() is not None:
            exited_at = exited_at or time.monotonic()
            if time.monotonic() > exited_at + 2.0:
                break  # the runner is gone; whatever still holds our pipes escaped it: stop waiting
    if killed_for or proc.poll() is None:
        _kill_group(proc)
    proc.wait()
    sel.close()
    for stream in (proc.stdout, proc.stderr, result_pipe):
        stream.close()
    return _result(proc, messages, out, err, killed_for, limits)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _result(proc, messages: bytearray, out: _Capture, err: _Capture, killed_for: str | None,
            limits: Limits) -> SandboxResult:
    parsed: dict = {}
    for line in bytes(messages).splitlines():
        try:
            parsed.update(json.loads(line))
        except (json.JSONDecodeError, TypeError, AttributeError):
            continue  # a design writing junk on our pipe cannot forge a malformed reply into one
    runner = parsed.get("runner", {})
    result = SandboxResult(status="crashed", isolation=parsed.get("isolation", {}), stdout=out.text(),
                           stderr=err.text(), stdout_bytes=out.total, stderr_bytes=err.total,
                           exit_code=runner.get("exit_code"), cpu_s=runner.get("cpu_s"),
                           max_rss_mb=runner.get("max_rss_mb"))
    job = parsed.get("result")
    if killed_for == "timeout":
        result.status, result.error = "timeout", f"no result within {limits.timeout_s:g} s: killed"
    elif killed_for == "output":
        result.status = "killed"
        result.error = f"wrote more than {limits.max_output_mb} MiB to stdout/stderr: killed"
    elif isinstance(job, dict) and job.get("status") in STATUSES:
        result.status = job["status"]
        result.payload = job.get("payload") if result.status == "ok" else None
        result.error = str(job.get("error", ""))
        result.traceback = str(job.get("traceback", ""))
        result.frames = job.get("frames", []) if isinstance(job.get("frames"), list) else []
        if result.ok and not isinstance(result.payload, dict):
            result.status, result.error = "crashed", "the job's reply was not a JSON object"
    else:
        code = result.exit_code if result.exit_code is not None else proc.returncode
        result.status, result.error = _no_reply(code, result.max_rss_mb, limits)
    if result.status == "ok" and result.exit_code not in (0, None):
        result.status, result.error = _no_reply(result.exit_code, result.max_rss_mb, limits)
    return result


def _no_reply(code: int | None, max_rss_mb: float | None, limits: Limits) -> tuple[str, str]:
    """Why a job's process ended without a result."""
    if code is not None and code < 0:
        sig = -code
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        if sig == signal.SIGXCPU:
            return "timeout", f"used its {limits.config()['cpu_s']:g} CPU seconds: killed ({name})"
        if sig == signal.SIGKILL and limits.memory_mb and max_rss_mb and max_rss_mb > 0.9 * limits.memory_mb:
            return "out_of_memory", f"killed ({name}) at {max_rss_mb:.0f} MiB resident, limit {limits.memory_mb} MiB"
        if sig in (signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGABRT):
            return "crashed", f"the process crashed ({name}) before returning a result"
        return "killed", f"killed by signal {name} before returning a result"
    return "crashed", f"the process exited with code {code} before returning a result"


def measure_isolated(jobs: list[dict], timeout: float = 300.0) -> list[dict]:
    """Run designs.measure jobs (sizing, parameter counts, FLOPs) in the sandbox; one reply per job.

    Raises MeasureError when the sandbox as a whole fails (timeout, crash); a design
    that fails on its own gets an `{"ok": false, ...}` reply and the others go on.
    """
    from designs.measure import MeasureError

    result = run_job("measure", name="measure", args={"jobs": jobs}, limits=Limits(timeout_s=timeout))
    if result.status == "timeout":
        raise MeasureError(f"measuring timed out after {timeout:g} s")
    if not result.ok:
        raise MeasureError(f"measuring failed: {result.summary()}")
    return result.payload["replies"]
