"""`python cli.py leaderboard | show DESIGN | report`: what a run found, from its run directory.

    python cli.py leaderboard                      # best designs first, fitness vs GPT-2 with noise
    python cli.py leaderboard --json --limit 5     # the same rows as JSON
    python cli.py show g0003a-mutation             # proposal, reviews, unit tree, diff, verification, costs
    python cli.py report --out /tmp/run.html       # one self-contained HTML file with plots

The ladder is the run's own (RUN_DIR/run.json), unless --ladder names another;
a directory without run.json (designs verified by hand) is read on the cpu ladder.
These commands only read: they never start or change a run.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import typer
from rich.console import Console
from rich.markdown import Markdown

from designs.archive import ArchiveError, UnknownDesign
from designs.catalog import run_dir_default
from graph.evolution import RUN_FILE, RunError, load_run_config
from graph.report import ReportError, leaderboard, open_run_archive, rows_table, show_design, write_report
from verifier.ladder import LadderError, get_ladder

report_app = typer.Typer(no_args_is_help=True, add_completion=False,
                         help="What a run found: leaderboard, one design in full, the HTML report.")
console = Console()

RunDir = typer.Option(None, "--run-dir", help="Run directory [default: $GENESYS_RUN_DIR or runs/default]")
Ladder = typer.Option(None, "--ladder", help="Ladder to rank on [default: the run's, from run.json; else cpu]")


def reads_cleanly(command):
    """Expected failures (no run, no such design, nothing verified) end with one line on stderr, exit 2."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (ReportError, UnknownDesign, ArchiveError, RunError, LadderError, OSError) as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None

    return run


def run_ladder(run_dir: Path, ladder: str | None) -> str:
    """The ladder a run directory is read on: --ladder, else the run's, else cpu."""
    if ladder is not None:
        get_ladder(ladder)  # LadderError with close names when unknown
        return ladder
    if (run_dir / RUN_FILE).exists():
        return load_run_config(run_dir).ladder
    return "cpu"


@report_app.command("leaderboard")
@reads_cleanly
def leaderboard_command(
    run_dir: Path | None = RunDir,
    ladder: str | None = Ladder,
    limit: int = typer.Option(20, "--limit", min=1, help="Show at most this many designs"),
    as_json: bool = typer.Option(False, "--json", help="Print the rows as JSON"),
) -> None:
    """The verified designs, best first: fitness against GPT-2 with its noise (ties share a rank)."""
    run_dir = run_dir or run_dir_default()
    ladder = run_ladder(run_dir, ladder)
    with open_run_archive(run_dir) as archive:
        rows = leaderboard(archive, ladder)
    if not rows:
        raise ReportError(f"no verified designs yet in {run_dir} (ladder {ladder})")
    if as_json:
        typer.echo(json.dumps({"run_dir": str(run_dir), "ladder": ladder, "total": len(rows),
                               "designs": [r.to_dict() for r in rows[:limit]]}, indent=1))
    else:
        console.print(rows_table(rows, ladder, limit))


@report_app.command("show")
@reads_cleanly
def show_command(
    design: str = typer.Argument(..., help="Design name (see `leaderboard` or `designs list`)"),
    run_dir: Path | None = RunDir,
    markdown: bool = typer.Option(False, "--markdown", help="Print the markdown source instead of rendering it"),
) -> None:
    """One design in full: proposal, reviews, unit tree, code diff against its parent, verification, costs."""
    with open_run_archive(run_dir or run_dir_default()) as archive:
        text = show_design(archive, design)
    if markdown:
        typer.echo(text, nl=False)
    else:
        console.print(Markdown(text, code_theme="ansi_light"))


@report_app.command("report")
@reads_cleanly
def report_command(
    run_dir: Path | None = RunDir,
    ladder: str | None = Ladder,
    out: Path | None = typer.Option(None, "--out", help="Where to write the HTML [default: RUN_DIR/report.html]"),
) -> None:
    """Write one self-contained HTML report (summary, leaderboard, plots) and print its path."""
    run_dir = run_dir or run_dir_default()
    if out is not None and out.is_dir():
        raise ReportError(f"--out {out} is a directory; give a file name such as {out / 'report.html'}")
    path = write_report(run_dir, run_ladder(run_dir, ladder), out)
    typer.echo(str(path))
