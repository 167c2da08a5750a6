"""Child-side isolation: namespaces, read-only filesystem, resource limits, dropped privileges.

Runs inside the sandbox's child process before any design code, while that process
is still single-threaded (torch not imported). Linux only; every step that the OS
refuses is skipped and recorded, so the caller's result says what was in force.

Layout the design code sees (when mount namespaces are allowed):
  /            read-only (every mount, recursively)
  /tmp         a fresh tmpfs (size-capped); /tmp/work is the working directory
  /tmp/out     the caller's output directory, writable (only when one is given)
  /dev/shm     a small fresh tmpfs
  /proc        of its own PID namespace: it sees only its own processes
and no network interfaces but a down loopback (a new network namespace).
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18
MOUNT_ATTR_RDONLY, AT_FDCWD, AT_RECURSIVE = 1, -100, 0x8000
SYS_MOUNT_SETATTR = 442  # the same number on every architecture (unified syscall table)
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38

WORKDIR = "/tmp/work"
OUTDIR = "/tmp/out"

_libc = ctypes.CDLL(None, use_errno=True)


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _chown_tree(top: str, uid: int) -> None:
    """Hand the output directory, and what earlier jobs left in it, to this job's uid.

    A resumed training job may run under another uid than the one that wrote its
    checkpoints (uids differ between parent processes), and must read and replace them.
    """
    os.chown(top, uid, uid)
    for root, dirs, files in os.walk(top):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), uid, uid)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source, target, fstype, flags, data=None) -> None:
    enc = lambda s: s.encode() if isinstance(s, str) else s  # noqa: E731
    _check(_libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)), f"mount {target}")


def enter_namespaces(config: dict) -> dict:
    """Unshare network, mount and PID namespaces and lay out the filesystem.

    Returns the isolation record: what is in force and, for what is not, why.
    The caller must fork afterwards: only children live in the new PID namespace.
    """
    iso: dict = {"network": "shared", "filesystem": "shared", "pid_namespace": False, "notes": []}
    root = os.geteuid() == 0
    uid, gid = os.getuid(), os.getgid()
    flags = CLONE_NEWNS | CLONE_NEWPID | (0 if config.get("network") else CLONE_NEWNET)
    try:
        _check(_libc.unshare(flags | (0 if root else CLONE_NEWUSER)), "unshare")
    except OSError as e:
        iso["notes"].append(f"no namespaces ({e.strerror}): network, filesystem and processes are not isolated")
        return iso
    if not root:  # map ourselves to root inside the new user namespace
        for path, text in (("/proc/self/setgroups", "deny"), ("/proc/self/uid_map", f"0 {uid} 1"),
                           ("/proc/self/gid_map", f"0 {gid} 1")):
            with open(path, "w") as f:
                f.write(text)
        iso["user_namespace"] = True
    iso["pid_namespace"] = True
    iso["network"] = "allowed" if config.get("network") else "none (own network namespace)"
    try:
        _layout_filesystem(config)
        iso["filesystem"] = "read-only, tmpfs /tmp (%d MiB)" % config["workdir_mb"]
        if config.get("output_dir"):
            iso["filesystem"] += ", writable /tmp/out"
    except OSError as e:
        iso["notes"].append(f"filesystem not read-only ({e.strerror}); writes limited by file permissions")
        os.makedirs(WORKDIR, exist_ok=True)
    return iso


def _layout_filesystem(config: dict) -> None:
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    out_fd = os.open(config["output_dir"], os.O_RDONLY | os.O_DIRECTORY) if config.get("output_dir") else None
    keep = _outermost(config.get("readable_paths") or [])
    scratch = ("/tmp", "/dev/shm")
    hidden = set()
    if os.geteuid() == 0:  # root is dropped below: private directories on the way to kept paths must open
        hidden = {h for h in map(_hidden_ancestor, keep) if h and not any(_under(h, s) for s in scratch)}
    attr = _MountAttr(MOUNT_ATTR_RDONLY, 0, 0, 0)
    _check(_libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, b"/", AT_RECURSIVE, ctypes.byref(attr),
                         ctypes.sizeof(attr)), "read-only /")
    _cover("/tmp", f"size={config['workdir_mb']}m,mode=1777", keep)
    if os.path.isdir("/dev/shm"):
        _cover("/dev/shm", "size=64m,mode=1777", keep)
    for directory in sorted(hidden):
        _cover(directory, "size=1m,mode=0755", keep)
    os.makedirs(WORKDIR, 0o700)
    if out_fd is not None:
        os.mkdir(OUTDIR, 0o700)
        _mount(f"/proc/self/fd/{out_fd}", OUTDIR, None, MS_BIND)
        _mount(None, OUTDIR, None, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV)  # writable again
        os.close(out_fd)


def _under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def _outermost(paths: list[str]) -> list[str]:
    """Real paths that exist, without those inside another one."""
    out: list[str] = []
    for path in sorted({os.path.realpath(p) for p in paths if os.path.exists(p)}):
        if not any(_under(path, o) for o in out):
            out.append(path)
    return out


def _hidden_ancestor(path: str) -> str | None:
    """The outermost directory above `path` that other users may not enter (say, /root)."""
    parts = os.path.realpath(path).split(os.sep)[1:]
    for i in range(1, len(parts) + 1):
        ancestor = os.sep + os.sep.join(parts[:i])
        if os.path.isdir(ancestor) and not os.stat(ancestor).st_mode & 0o001:
            return ancestor
    return None


def _cover(directory: str, options: str, keep: list[str]) -> None:
    """Mount a fresh tmpfs on `directory`, then bind the kept paths inside it back, read-only.

    This gives the job an empty private /tmp, and hides private directories (a home
    holding pyenv or a venv, say /root) except for the interpreter and the code the
    job must import: a checkout under /tmp or a venv under a home directory still works.
    """
    binds = [(p, os.open(p, os.O_RDONLY | os.O_PATH)) for p in keep if _under(p, directory) and p != directory]
    _mount("tmpfs", directory, "tmpfs", MS_NOSUID | MS_NODEV, options)
    for path, fd in binds:
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            os.makedirs(path, mode=0o755, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
            open(path, "a").close()
        _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
        _mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
        os.close(fd)


def die_with_parent(parent_pid: int | None) -> None:
    """In the runner: be killed when the process that started the job dies (kill -9 included).

    Without this a killed `run` or Ray worker would leave its training job running to the
    rung's timeout. The caller's pid is checked after the request, since it may already be gone.
    """
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if parent_pid and os.getppid() != parent_pid:
        os._exit(75)


def become_init(iso: dict) -> None:
    """In PID 1 of the new namespace: die with the runner, mount the namespace's own /proc."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if iso.get("pid_namespace"):
        try:
            _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV)
        except OSError as e:
            iso["notes"].append(f"/proc not remounted ({e.strerror}): host processes are visible")


def confine(config: dict, iso: dict) -> None:
    """In the job's process: die with its init, resource limits, then drop root."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    limits = {
        resource.RLIMIT_CORE: 0,
        resource.RLIMIT_FSIZE: config["file_size_mb"] << 20,
        resource.RLIMIT_NPROC: config["max_procs"],
        resource.RLIMIT_NOFILE: 1024,
    }
    if config.get("memory_mb"):
        limits[resource.RLIMIT_DATA] = config["memory_mb"] << 20
    for which, value in limits.items():
        _, hard = resource.getrlimit(which)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(which, (value, value))
    if config.get("cpu_s"):
        soft = int(config["cpu_s"])
        resource.setrlimit(resource.RLIMIT_CPU, (soft, soft + 5))
    iso["limits"] = {"memory_mb": config.get("memory_mb"), "cpu_s": config.get("cpu_s"),
                     "max_procs": config["max_procs"], "file_size_mb": config["file_size_mb"]}
    workdir = WORKDIR if os.path.isdir(WORKDIR) else os.getcwd()
    if os.geteuid() == 0 and not iso.get("user_namespace"):
        uid = int(config["uid"])
        os.chown(workdir, uid, uid)
        if os.path.isdir(OUTDIR):
            _chown_tree(OUTDIR, uid)
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)  # from here the process limit counts against this uid, and root's files are closed
        iso["uid"] = uid
    elif os.geteuid() == 0:
        iso["notes"].append("runs as root of its own user namespace (the invoking user outside)")
    _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    os.chdir(workdir)
    iso["workdir"] = workdir
