"""The sandbox's child process: isolate, run one job's entry point, report on a pipe.

Started by `verifier.sandbox.run_job` as `python -I -c ...`; never imported by the
main process for anything but its name. It reads one JSON request on stdin:

    {"entry": "check", "source": "<composed design module>", "name": "my_design",
     "line_map": {"123": ["MHA", 40], ...}, "args": {...}, "config": {...limits...},
     "env": {...}, "result_fd": 3}

then (1) enters new network, mount and PID namespaces (verifier.jail), (2) forks
PID 1 of the namespace, which forks the job's process, confined (resource limits,
dropped privileges, its own working directory), reaps and reports, and (3) waits. Messages to
the caller go on the result pipe, one JSON object per line: `{"isolation": ...}`,
then the job's `{"result": ...}`, then PID 1's `{"runner": ...}` with how the
job's process ended.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import traceback

from verifier import jail


class NonFiniteError(ArithmeticError):
    """A loss, an activation or a gradient became NaN or infinite."""


def _send(fd: int, message: dict) -> None:
    data = (json.dumps(message, default=str) + "\n").encode()
    while data:
        data = data[os.write(fd, data):]


def _design_frames(tb, line_map: dict) -> list[dict]:
    frames = []
    for frame in traceback.extract_tb(tb):
        if not frame.filename.startswith("<design"):
            continue
        unit, unit_line = line_map.get(str(frame.lineno), (None, None))
        frames.append({"line": frame.lineno, "unit": unit, "unit_line": unit_line, "code": frame.line or "",
                       "function": frame.name})
    return frames


def _format_frames(frames: list[dict]) -> str:
    lines = ["Traceback (design code only, innermost last):"]
    for f in frames:
        where = f"unit {f['unit']} line {f['unit_line']}" if f["unit"] else "GAU runtime"
        lines.append(f"  composed line {f['line']} ({where}), in {f['function']}\n    {f['code']}")
    return "\n".join(lines)


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    text = f"{type(exc).__name__}: {exc}"
    return any(s in text for s in ("OutOfMemoryError", "out of memory", "can't allocate memory",
                                   "DefaultCPUAllocator: not enough memory", "Cannot allocate memory"))


def classify(exc: BaseException, line_map: dict) -> dict:
    """Turn an exception from the job into a result: status, one-line error, trimmed traceback."""
    frames = _design_frames(exc.__traceback__, line_map)
    if isinstance(exc, SystemExit):
        status, error = "exception", f"design code called sys.exit({exc.code!r}); a unit must never exit"
    elif isinstance(exc, NonFiniteError):
        status, error = "nonfinite", str(exc)
    elif is_out_of_memory(exc):
        status, error = "out_of_memory", f"{type(exc).__name__}: {str(exc)[:300]}"
    else:
        status, error = "exception", f"{type(exc).__name__}: {str(exc)[:1000]}"
    if frames:
        tb_text = _format_frames(frames[-8:])
        last = frames[-1]
        if last["unit"]:
            error += f" (unit {last['unit']} line {last['unit_line']}: {last['code'].strip()})"
    else:
        tb_text = "".join(traceback.format_exception(exc)[-6:])
    return {"status": status, "error": error, "traceback": tb_text, "frames": frames,
            "exception_type": type(exc).__name__}


def _run_job(request: dict, fd: int) -> None:
    """In the confined process: run the entry point and send its result."""
    from verifier import entries

    try:
        payload = entries.run(request)
        result = {"status": "ok", "payload": payload}
    except BaseException as exc:  # noqa: BLE001 - design code can raise anything, SystemExit included
        result = classify(exc, request.get("line_map") or {})
    _send(fd, {"result": result})


def main() -> None:
    request = json.loads(sys.stdin.read())
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    fd = int(request["result_fd"])
    config = request["config"]
    jail.die_with_parent(request.get("parent_pid"))
    iso = jail.enter_namespaces(config) if config.get("isolate", True) else {"notes": ["isolation disabled"]}
    jail.die_with_parent(request.get("parent_pid"))  # a new user namespace may have cleared it
    init = os.fork()
    if init == 0:
        _init(request, config, iso, fd)
    os.waitpid(init, 0)
    os._exit(0)


def _init(request: dict, config: dict, iso: dict, fd: int) -> None:
    """PID 1 of the namespace: start the job, reap every process, report how the job ended.

    The job must not be PID 1 itself: the kernel drops signals that PID 1 does not
    handle (SIGXCPU, SIGTERM), which would hide CPU-limit and kill outcomes.
    """
    try:
        jail.become_init(iso)
        job = os.fork()
    except BaseException as exc:  # noqa: BLE001
        _send(fd, {"result": {"status": "crashed", "error": f"sandbox setup failed: {exc!r}"}})
        os._exit(70)
    if job == 0:
        try:
            jail.confine(config, iso)
            os.environ.clear()
            os.environ.update(request["env"], HOME=os.getcwd(), TMPDIR=os.getcwd())
            _send(fd, {"isolation": iso})
            _run_job(request, fd)
        except BaseException as exc:  # noqa: BLE001 - setting up failed: say so, never run unconfined
            _send(fd, {"result": {"status": "crashed", "error": f"sandbox setup failed: {exc!r}",
                                  "traceback": traceback.format_exc()}})
            os._exit(70)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    while True:  # reap orphans until the job itself ends
        pid, status, usage = os.wait4(-1, 0)
        if pid == job:
            break
    _send(fd, {"runner": {
        "exit_code": os.waitstatus_to_exitcode(status),
        "max_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
    }})
    os._exit(0)  # PID 1 exits: the kernel kills whatever the job left behind


if __name__ == "__main__":
    main()
