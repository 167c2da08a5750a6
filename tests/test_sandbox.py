"""The sandbox: every way design code can misbehave as a program is contained and named.

These run raw module source through the "exec" entry point (no torch import, so each
job takes a fraction of a second); tests/test_checker.py runs whole hostile designs.
"""

import os
import time
from pathlib import Path

import pytest

from verifier.sandbox import Limits, SandboxResult, clean_env, run_job
from verifier.sandbox_child import NonFiniteError, classify

FAST = Limits(timeout_s=20, memory_mb=1024, threads=1)


def run(code: str, limits: Limits = FAST, **kw) -> SandboxResult:
    return run_job("exec", code, name="hostile", args={"call": "main"}, limits=limits, **kw)


def sandbox_processes() -> list[int]:
    """PIDs owned by a sandbox uid (60000-64999) still alive (zombies included)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if 60000 <= os.stat(f"/proc/{entry}").st_uid < 65000:
                    pids.append(int(entry))
            except FileNotFoundError:
                continue
    return pids


@pytest.fixture(scope="module")
def isolation():
    result = run("def main():\n    return 1\n")
    assert result.ok, result.summary()
    return result.isolation


def test_ok_returns_the_payload_and_records_isolation(isolation):
    result = run("def main():\n    return {'answer': 6 * 7}\n")
    assert result.ok and result.payload == {"value": {"answer": 42}}
    assert result.exit_code == 0 and result.wall_s > 0
    assert isolation["workdir"] and "limits" in isolation


def test_isolation_is_in_force_where_the_os_allows(isolation):
    if any("no namespaces" in n for n in isolation["notes"]):
        pytest.skip("this OS refuses namespaces: " + "; ".join(isolation["notes"]))
    assert isolation["network"].startswith("none") and isolation["pid_namespace"]
    assert isolation["filesystem"].startswith("read-only")


def test_exception_traceback_is_trimmed_to_design_lines():
    code = "def helper(x):\n    return 1 / x\n\ndef main():\n    return helper(0)\n"
    result = run(code, line_map={2: ["MyUnit", 12], 5: ["MyUnit", 20]})
    assert result.status == "exception"
    assert result.error.startswith("ZeroDivisionError") and "unit MyUnit line 12" in result.error
    assert [f["unit_line"] for f in result.frames] == [20, 12]
    assert "verifier" not in result.traceback and "composed line 2 (unit MyUnit line 12)" in result.traceback


def test_infinite_loop_times_out_and_the_caller_goes_on():
    started = time.monotonic()
    result = run("def main():\n    while True:\n        pass\n", Limits(timeout_s=3, threads=1))
    assert result.status == "timeout" and "3 s" in result.error
    assert time.monotonic() - started < 10
    assert run("def main():\n    return 'next'\n").payload == {"value": "next"}


def test_cpu_time_cap():
    result = run("def main():\n    while True:\n        pass\n", Limits(timeout_s=30, cpu_s=1, threads=1))
    assert result.status == "timeout" and "CPU seconds" in result.error


def test_memory_bomb_is_out_of_memory():
    code = "def main():\n    hoard = []\n    while True:\n        hoard.append(bytearray(50_000_000))\n"
    result = run(code, Limits(timeout_s=30, memory_mb=512, threads=1))
    assert result.status == "out_of_memory" and "MemoryError" in result.error


def test_fork_bomb_is_contained_and_leaves_nothing_behind():
    code = ("import os\ndef main():\n    while True:\n        try:\n            os.fork()\n"
            "        except OSError:\n            pass\n")
    result = run(code, Limits(timeout_s=4, max_procs=32, threads=1))
    assert result.status == "timeout"
    deadline = time.monotonic() + 5
    while sandbox_processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sandbox_processes() == []


def test_process_cap_refuses_new_processes(isolation):
    code = ("import os\ndef main():\n    kids = []\n    try:\n        for _ in range(100):\n"
            "            pid = os.fork()\n            if pid == 0:\n                import time; time.sleep(30)\n"
            "            kids.append(pid)\n    except OSError as e:\n        return len(kids), e.errno\n"
            "    return len(kids), None\n")
    result = run(code, Limits(timeout_s=20, max_procs=16, threads=1))
    assert result.ok, result.summary()
    started, errno = result.payload["value"]
    assert errno == 11 and started < 16  # EAGAIN: the cap held


def test_sys_exit_is_an_exception_not_an_exit():
    result = run("import sys\ndef main():\n    sys.exit(0)\n")
    assert result.status == "exception" and "sys.exit" in result.error


def test_os_exit_without_a_result_is_a_crash():
    result = run("import os\ndef main():\n    os._exit(3)\n")
    assert result.status == "crashed" and "code 3" in result.error


def test_segfault_is_a_crash():
    result = run("import ctypes\ndef main():\n    ctypes.string_at(0)\n")
    assert result.status == "crashed" and "SIGSEGV" in result.error


def test_killed_by_signal():
    result = run("import os, signal\ndef main():\n    os.kill(os.getpid(), signal.SIGTERM)\n    import time\n"
                 "    time.sleep(5)\n")
    assert result.status == "killed" and "SIGTERM" in result.error


def test_no_network(isolation):
    if not isolation["network"].startswith("none"):
        pytest.skip("no network namespace here: " + "; ".join(isolation["notes"]))
    code = ("import socket\ndef main():\n    s = socket.create_connection(('127.0.0.1', 22), timeout=2)\n"
            "    return 'connected'\n")
    assert run(code).status == "exception"
    code = "import socket\ndef main():\n    socket.create_connection(('1.1.1.1', 80), timeout=2)\n"
    result = run(code)
    assert result.status == "exception" and "unreachable" in result.error.lower()


def test_writes_outside_the_working_directory_fail(tmp_path, isolation):
    target = Path("/var/tmp") / f"genesys-pwned-{os.getpid()}"
    code = f"def main():\n    open({str(target)!r}, 'w').write('x')\n"
    result = run(code)
    assert result.status == "exception" and not target.exists()
    assert ("Read-only" in result.error) or ("Permission denied" in result.error)
    repo_file = Path(__file__).resolve().parents[1] / "PWNED"
    assert run(f"def main():\n    open({str(repo_file)!r}, 'w').write('x')\n").status == "exception"
    assert not repo_file.exists()


def test_working_directory_is_writable_private_and_removed():
    code = ("import os\ndef main():\n    open('scratch.txt', 'w').write('x' * 1000)\n"
            "    open('/tmp/other.txt', 'w').write('y')\n    return os.getcwd(), sorted(os.listdir('.'))\n")
    result = run(code)
    assert result.ok, result.summary()
    cwd, listing = result.payload["value"]
    assert listing == ["scratch.txt"]
    assert not (Path(cwd) / "scratch.txt").exists()  # it lived on the job's own tmpfs, gone with it
    assert not Path("/tmp/other.txt").exists()


def test_a_job_can_ask_who_it_is_and_where_home_is():
    """The job's uid has no passwd entry; torch on a CUDA machine calls getpass.getuser() while
    building a model, which raised KeyError('getpwuid(): uid not found') there."""
    code = ("import getpass, os\ndef main():\n    home = os.path.expanduser('~')\n"
            "    open(os.path.join(home, 'cache.txt'), 'w').write('x')\n    return getpass.getuser(), home\n")
    result = run(code)
    assert result.ok, result.summary()
    user, home = result.payload["value"]
    assert user == "genesys-sandbox" and home == "/tmp/work"


def test_output_dir_is_the_only_persistent_place(tmp_path):
    out = tmp_path / "out"
    result = run("def main():\n    open('/tmp/out/result.txt', 'w').write('kept')\n", output_dir=out)
    assert result.ok, result.summary()
    assert (out / "result.txt").read_text() == "kept"


def test_file_size_cap():
    code = "def main():\n    open('big.bin', 'wb').write(b'x' * (3 << 20))\n"
    result = run(code, Limits(timeout_s=20, file_size_mb=1, threads=1))
    assert result.status == "exception" and "File too large" in result.error


def test_secrets_never_reach_design_code(monkeypatch):
    secrets = {"OPENAI_API_KEY": "sk-1", "ANTHROPIC_API_KEY": "sk-2", "AWS_SECRET_ACCESS_KEY": "a",
               "AWS_ACCESS_KEY_ID": "b", "HF_TOKEN": "hf", "S2_API_KEY": "s2", "GITHUB_TOKEN": "gh",
               "GOOGLE_APPLICATION_CREDENTIALS": "/x.json", "DATABASE_URL": "postgresql://u:p@h/db"}
    for key, value in secrets.items():
        monkeypatch.setenv(key, value)
    code = ("import os\ndef main():\n    seen = dict(os.environ)\n    try:\n"
            "        seen['parent'] = open(f'/proc/{os.getppid()}/environ').read()\n    except OSError:\n"
            "        pass\n    return seen\n")
    result = run(code, env={"EXTRA_API_KEY": "sk-3", "GENESYS_NOTE": "fine"})
    assert result.ok, result.summary()
    seen = result.payload["value"]
    assert not set(secrets) & set(seen) and "EXTRA_API_KEY" not in seen and seen["GENESYS_NOTE"] == "fine"
    assert not any(v in str(seen) for v in ("sk-1", "sk-2", "hf", "s2", "postgresql://"))
    assert not any(k for k in clean_env() if k in secrets)


def test_stdout_flood_is_bounded_then_killed():
    code = "def main():\n    while True:\n        print('x' * 4096)\n"
    result = run(code, Limits(timeout_s=30, max_output_mb=4, output_bytes=1000, threads=1))
    assert result.status == "killed" and "MiB" in result.error
    assert result.stdout_bytes > 4 << 20 and len(result.stdout) < 2200


def test_finite_output_is_kept_head_and_tail():
    code = "def main():\n    for i in range(5000):\n        print(f'line {i}')\n    return 'done'\n"
    result = run(code, Limits(timeout_s=20, output_bytes=200, threads=1))
    assert result.ok and result.stdout.startswith("line 0") and result.stdout.rstrip().endswith("line 4999")
    assert "bytes not kept" in result.stdout


def test_nonfinite_is_its_own_outcome():
    code = ("from verifier.sandbox_child import NonFiniteError\ndef main():\n"
            "    raise NonFiniteError('the training loss became nan at step 3')\n")
    result = run(code)
    assert result.status == "nonfinite" and "step 3" in result.error
    info = classify(NonFiniteError("x"), {})
    assert info["status"] == "nonfinite"


def test_a_forged_reply_line_cannot_break_the_parent():
    code = ("import os\ndef main():\n    for fd in range(3, 20):\n        try:\n"
            "            os.write(fd, b'{not json\\n')\n        except OSError:\n            pass\n    return 'ok'\n")
    result = run(code)
    assert result.ok and result.payload == {"value": "ok"}


def test_unknown_entry_point():
    result = run_job("no-such-entry", "x = 1", limits=FAST)
    assert result.status == "exception" and "unknown sandbox entry point" in result.error


def _processes_of(uid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    pids.append(int(entry))
            except FileNotFoundError:
                continue
    return pids


def test_a_job_dies_with_the_process_that_started_it(tmp_path):
    """kill -9 of the caller (a `run`, a Ray worker) ends its sandboxed job at once, not at the timeout."""
    import signal
    import subprocess
    import sys

    uid = 64000 + os.getpid() % 900
    code = ("import time\ndef main():\n    open('/tmp/out/started', 'w').close()\n    time.sleep(120)\n")
    caller = ("import sys; sys.path.insert(0, sys.argv[1])\n"
              "from verifier.sandbox import Limits, run_job\n"
              f"run_job('exec', {code!r}, name='sleeper', args={{'call': 'main'}}, output_dir={str(tmp_path)!r},"
              f" uid={uid}, limits=Limits(timeout_s=300, memory_mb=1024, threads=1))\n")
    proc = subprocess.Popen([sys.executable, "-c", caller, str(Path(__file__).resolve().parents[1])])
    deadline = time.monotonic() + 60
    while not (tmp_path / "started").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the job never started"
        time.sleep(0.1)
    assert _processes_of(uid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while _processes_of(uid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_of(uid) == []
