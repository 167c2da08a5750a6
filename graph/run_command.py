"""`python cli.py run`: the main job, with a live display of where the run stands.

    python cli.py run                                   # symbolic designer, CPU ladder, ~15 minutes
    python cli.py run --llm openai:gpt-4.1 --ladder gpu --corpus fineweb-edu --budget-designs 200
    python cli.py run --resume runs/default             # continue a killed run

The display shows the designs proposed, implemented, failed and verified per rung,
the best fitness so far against GPT-2 (with its noise), what each worker is doing,
and the time and budget left. The run ends on its own when a budget is spent.
"""

from __future__ import annotations

import contextlib
import errno
import time
import tomllib
from pathlib import Path

import typer
from pydantic import ValidationError
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from designs.catalog import run_dir_default
from graph.evolution import RunConfig, RunError, load_run_config, run_evolution

console = Console()


class Display:
    """Folds the run's events into counters and renders them."""

    def __init__(self, run: RunConfig):
        self.run = run
        self.started = time.monotonic()
        self.counts = {"proposed": 0, "implemented": 0, "failed": 0, "rejected": 0, "duplicate": 0}
        self.verified: dict[str, int] = {r: 0 for r in run.rung_names()}
        self.activity: dict[str, str] = {}
        self.phase = "starting"
        self.last: list[str] = []
        self.best = "none yet"

    def __call__(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "phase":
            self.phase = event["phase"]
        elif kind == "selected":
            self.counts["proposed"] += 1
            self.activity[event["thread"]] = f"{event['mode']} of {', '.join(event['parents']) or 'nothing'}"
        elif kind == "design_step":
            self.activity[event["thread"]] = event["status"][:90]
        elif kind == "designed":
            outcome = event["outcome"]
            key = outcome if outcome in self.counts else "failed"
            self.counts[key] += 1
            self._log(f"{event['name']}: {outcome}" + (f" ({event['reason'][:70]})" if event.get("reason") and
                                                       outcome != "implemented" else ""))
        elif kind == "verify":
            self.activity[event["design"]] = f"verifying on {event['rung']} (seed {event['seed']})"
        elif kind == "verify_progress":
            self.activity[event["design"]] = f"{event['rung']}: {event.get('phase', '')}"
        elif kind == "verified":
            self.activity.pop(event["design"], None)
            if event["status"] == "ok":
                self.verified[event["rung"]] = self.verified.get(event["rung"], 0) + 1
            self._log(f"{event['design']} @ {event['rung']}: {event['status']} in {event.get('wall_s', 0):.0f} s"
                      + (f" ({event['error'][:60]})" if event.get("error") else ""))
        elif kind == "designed_thread_done":
            self.activity.pop(event["thread"], None)
        elif kind == "stop":
            self.phase = "stopping: " + event["reason"]
        elif kind == "best":
            self.best = f"{event['design']} {event['fitness']:+.4f} ± {event['noise']:.4f} at {event['rung']}"

    def _log(self, line: str) -> None:
        self.last = (self.last + [line])[-6:]

    def line(self, event: dict) -> str | None:
        """One plain line for a log file (no terminal): the events worth a line, with the counters."""
        kind = event.get("event")
        if kind not in ("phase", "selected", "designed", "verified", "stop", "best"):
            return None
        if kind == "phase":
            what = f"phase: {event['phase']}"
        elif kind == "selected":
            what = f"{event['thread']}: {event['mode']} of {', '.join(event['parents']) or 'nothing'}"
        elif kind == "stop":
            what = f"stopping: {event['reason']}"
        elif kind == "best":
            what = f"best so far: {self.best}"
        else:
            what = self.last[-1] if self.last else kind
        counts = " ".join(f"{k}={v}" for k, v in self.counts.items() if v) or "-"
        verified = " ".join(f"{rung}={n}" for rung, n in self.verified.items())
        return f"[{(time.monotonic() - self.started) / 60:5.1f} min] {what}  | {counts} | verified {verified}"

    def render(self) -> Group:
        elapsed = time.monotonic() - self.started
        budget = self.run.budget
        left = f", {max(0.0, budget.minutes - elapsed / 60):.1f} min left" if budget.minutes is not None else ""
        head = Text(f"Genesys run on ladder {self.run.ladder}: {self.phase}  "
                    f"[{elapsed / 60:.1f} min elapsed{left}]", style="bold")
        table = Table(show_header=True, header_style="bold")
        for col in ("proposed", "implemented", "failed", "rejected", "duplicate"):
            table.add_column(col, justify="right")
        for rung in self.verified:
            table.add_column(f"verified@{rung}", justify="right")
        table.add_row(*(str(self.counts[c]) for c in ("proposed", "implemented", "failed", "rejected", "duplicate")),
                      *(str(v) for v in self.verified.values()))
        best = Text(f"best so far (fitness over GPT-2 at the highest rung, ± noise): {self.best}")
        lines = [best] + [Text(f"  {who}: {what}") for who, what in list(self.activity.items())[-6:]]
        recent = [Text(f"  {line}", style="dim") for line in self.last]
        return Group(head, table, *lines, *recent)


def run(
    resume: Path | None = typer.Option(None, "--resume", help="Continue the run in this directory after a kill."),
    run_dir: Path | None = typer.Option(None, "--run-dir", help="Run directory [default: $GENESYS_RUN_DIR or "
                                        "runs/default]"),
    config_file: Path | None = typer.Option(None, "--config", help="TOML file of run settings (ladder, rungs, "
                                            "workers, [budget], [design], ...); flags override it"),
    llm: list[str] = typer.Option([], "--llm", help="provider:model for every role, or ROLE=provider:model "
                                  "(repeatable); none: the symbolic designer"),
    ladder: str | None = typer.Option(None, "--ladder", help="Ladder preset (cpu, gpu) [default: cpu]"),
    rungs: list[str] = typer.Option([], "--rung", help="Climb only these rungs of the ladder (repeatable)"),
    corpus: str | None = typer.Option(None, "--corpus", help="Corpus of the language-modeling rungs "
                                      "(stdlib, a path or glob, fineweb-edu, smollm, hf:NAME)"),
    scale: float | None = typer.Option(None, "--scale", help="Scale every rung's training tokens"),
    workers: int | None = typer.Option(None, "--workers", help="Design sessions and verifications at once"),
    budget_designs: int | None = typer.Option(None, "--budget-designs", help="Stop after this many sessions"),
    budget_minutes: float | None = typer.Option(None, "--budget-minutes", help="Stop after this many minutes"),
    budget_dollars: float | None = typer.Option(None, "--budget-dollars", help="Stop at this LLM spend"),
    budget_cpu_hours: float | None = typer.Option(None, "--budget-cpu-hours", help="Stop at this much training"),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the run's choices"),
    ray: str | None = typer.Option(None, "--ray", help="Run verification jobs on the Ray cluster at HOST:PORT "
                                   "(needs the distributed extra)"),
    archive: str | None = typer.Option(None, "--archive", help="Keep the archive in this database "
                                       "(postgresql+psycopg://...) [default: the run directory]"),
) -> None:
    """Discover designs: select parents, design, check, verify along the ladder, repeat until a budget ends."""
    flags = {k: v for k, v in dict(llm=llm, ladder=ladder, rungs=rungs, corpus=corpus, scale=scale,
                                   workers=workers, seed=seed, ray=ray, archive=archive).items()
             if v not in (None, [])}
    budgets = {k: v for k, v in dict(designs=budget_designs, minutes=budget_minutes, dollars=budget_dollars,
                                     cpu_hours=budget_cpu_hours).items() if v is not None}
    if resume is not None:
        given = [f"--{k.replace('_', '-')}" for k in [*flags, *budgets]] + \
            [name for name, v in (("--run-dir", run_dir), ("--config", config_file)) if v is not None]
        if given:
            raise RunError(f"--resume continues a run with its recorded settings; drop {', '.join(given)}")
        directory = resume
        config = load_run_config(directory)
    else:
        directory = run_dir or run_dir_default()
        config = settings(config_file, flags, budgets)
    display = Display(config)
    # On a terminal a live panel; to a log file or a pipe, one line per event that matters, flushed.
    live = Live(display.render(), console=console, refresh_per_second=2, transient=False) \
        if console.is_terminal else None

    def on_event(event: dict) -> None:
        display(event)
        if live is not None:
            live.update(display.render())
        elif line := display.line(event):
            print(line, flush=True)

    with live if live is not None else contextlib.nullcontext():
        final = _evolve(directory, config, resume is not None, on_event)
    console.print(f"run ended: {final.get('stop', 'interrupted')}; {len(final.get('sessions', []))} design "
                  f"sessions; run directory {directory}")
    from graph.report import leaderboard_table, write_report

    console.print(leaderboard_table(directory, config))
    console.print(f"report: {write_report(directory, config.ladder)}")


def disk_full(exc: BaseException) -> bool:
    return (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or "disk is full" in str(exc) \
        or "No space left" in str(exc)


def _evolve(directory: Path, config: RunConfig, resume: bool, on_event) -> dict:
    """run_evolution, with a full disk turned into what to do about it."""
    try:
        return run_evolution(directory, None if resume else config, resume=resume, on_event=on_event)
    except Exception as e:  # noqa: BLE001 - only a full disk is translated; anything else goes on up
        if not disk_full(e):
            raise
        raise RunError(f"the disk holding {directory} is full ({type(e).__name__}: {str(e)[:200]}). Records "
                       f"are written in transactions and every step is checkpointed: free some space, then "
                       f"continue with `python cli.py run --resume {directory}`") from None


def settings(config_file: Path | None, flags: dict, budgets: dict) -> RunConfig:
    """The run's settings: the embedded defaults, then the config file, then the flags."""
    base: dict = {}
    if config_file is not None:
        try:
            base = tomllib.loads(config_file.read_text())
        except tomllib.TOMLDecodeError as e:
            raise RunError(f"{config_file}: not valid TOML: {e}") from None
    budget = {**(base.pop("budget", None) or {}), **budgets} or dict(DEFAULT_BUDGET)
    merged = {**base, **flags, "budget": budget}
    if merged.get("ladder", "cpu") == "cpu" and "rungs" not in merged and "scale" not in merged:
        merged = {**CPU_DEFAULT, **merged}
    try:
        return RunConfig.model_validate(merged)
    except ValidationError as e:
        where = f" in {config_file}" if config_file else ""
        raise RunError("bad run settings" + where + ": " + "; ".join(
            f"{'.'.join(map(str, err['loc'])) or 'run'}: {err['msg']}" for err in e.errors())) from None


DEFAULT_BUDGET = {"minutes": 15.0}
# The embedded default (`python cli.py run`): language modeling on the standard library at a
# quarter of lm-xs's tokens and a tenth of lm-s's (GPT-2 at 3M parameters trains at ~2.5k tokens/s
# on 2 cores: a quarter of lm-s is 4.5 minutes per run), so that in ~15 minutes the baseline is
# measured, several designs are checked and verified on lm-xs, and once two are, the best climbs
# to lm-s. The synthetic rung (several minutes per design) and full-length rungs are for longer
# runs (--rung, --scale).
CPU_DEFAULT = {"rungs": ["lm-xs", "lm-s"], "scale": 0.25, "rung_scale": {"lm-s": 0.4}, "baseline_repeats": 2,
               "promote_after": 2}
