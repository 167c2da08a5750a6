"""``python -m verifier.lmeval ARGS``: lm-eval's command line with the ``genesys``
model registered and our offline tasks included (see ``verifier/lmeval/__init__.py``).

ARGS are lm-eval's own (``run`` is implied, as with ``lm_eval``); this adds
``--include_path`` pointing at ``verifier/lmeval/tasks`` unless one is given, and
``--device cpu`` when no device is given and CUDA is not available. When every
task asked for is one of ours (``genesys_continuation``), lm-eval's own ~15,000
task files are not indexed (it saves some 20 s of YAML parsing; the results are
the same).
"""

from __future__ import annotations

import sys


def _has(args: list[str], option: str) -> bool:
    return any(a == option or a.startswith(option + "=") for a in args)


def _tasks(args: list[str]) -> list[str]:
    """The task names given with --tasks / -t (space or comma separated)."""
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--tasks="):
            out += arg.split("=", 1)[1].split(",")
        elif arg in ("--tasks", "-t"):
            i += 1
            while i < len(args) and not args[i].startswith("-"):
                out += args[i].split(",")
                i += 1
            continue
        i += 1
    return [t.strip() for t in out if t.strip()]


def _skip_builtin_tasks() -> None:
    """Make lm-eval's TaskManager index only the include paths."""
    import lm_eval.tasks

    base = lm_eval.tasks.TaskManager

    class OwnTasksManager(base):
        def __init__(self, *a, **kw):
            kw.setdefault("include_defaults", False)
            super().__init__(*a, **kw)

    lm_eval.tasks.TaskManager = OwnTasksManager


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    from verifier.lmeval import TASKS_DIR, register

    register()
    subcommands = {"run", "ls", "validate"}
    is_run = bool(args) and (args[0] == "run" or (args[0] not in subcommands and args[0] not in ("-h", "--help")))
    if is_run and not _has(args, "--device"):
        import torch

        if not torch.cuda.is_available():
            args += ["--device", "cpu"]
    from verifier.evaluate import OFFLINE_TASKS

    tasks = _tasks(args)
    if is_run and tasks and all(t in OFFLINE_TASKS for t in tasks) and not _has(args, "--include_path"):
        _skip_builtin_tasks()
    if is_run or (args and args[0] == "ls"):
        if not _has(args, "--include_path"):
            args += ["--include_path", str(TASKS_DIR)]
    from lm_eval.__main__ import cli_evaluate

    sys.argv = ["lm_eval", *args]
    cli_evaluate()


if __name__ == "__main__":
    main()
