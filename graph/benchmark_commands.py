"""`python cli.py benchmark agents ...`: compare designers (LLM backends, the symbolic one) and ablations.

    python cli.py benchmark agents --llm none --n 5                      # the symbolic designer, offline
    python cli.py benchmark agents --llm openai:gpt-4.1 --llm anthropic:claude-sonnet-4-5 --n 20
    python cli.py benchmark agents --llm openai:gpt-4.1 --ablation full --ablation direct
    python cli.py benchmark agents --llm coder=ollama:qwen2.5-coder:7b,proposer=openai:gpt-4.1

Every backend runs under every ablation, from the same fixed starting points
(graph.benchmark.STARTS), and the paper's table is printed at the end. Each series
keeps its own run directory under --run-dir, so a stopped benchmark resumes.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from graph.benchmark import (COLUMNS, STARTS_VERSION, BenchmarkError, Row, SessionResult, resolve_backend,
                             row_cells, run_series, save_rows, summarize, table_text)
from graph.configuration import ABLATIONS, DesignConfig

benchmark_app = typer.Typer(add_completion=False, no_args_is_help=True,
                            help="Measure the system: the agent benchmark.")
console = Console()

DEFAULT_RUN_DIR = Path("runs") / "agent-benchmark"
# The tests' quick checks: build, run, causality and a short training run, no efficiency comparison.
FAST_CHECK = {"efficiency": False, "train_steps": 10, "extra": {"batch_size": 4, "train_seq_len": 32}}
TABLE_WIDTH = 150  # narrower consoles get the plain-text table (rich would cut the cells)


@benchmark_app.callback()
def benchmark() -> None:
    """Benchmarks of the agents."""


@benchmark_app.command("agents")
def agents(
    llm: list[str] = typer.Option([], "--llm", help="A backend: none (the symbolic designer), provider:model, or "
                                  "ROLE=provider:model[,ROLE=provider:model...]; repeat to compare backends "
                                  "[default: as configured (GENESYS_LLM...), symbolic when nothing is]"),
    n: int = typer.Option(20, "--n", min=1, help="Sessions per backend and ablation (the first n starting points)."),
    ablation: list[str] = typer.Option([], "--ablation", help=f"{' | '.join(ABLATIONS)}; repeat to compare "
                                       "[default: full, the paper's workflow]"),
    run_dir: Path = typer.Option(DEFAULT_RUN_DIR, "--run-dir", help="Where the series' archives and checkpoints "
                                 "live (one folder per backend and ablation); reuse it to resume."),
    config_file: Path | None = typer.Option(None, "--config", help="Run config (TOML) whose [design] table sets "
                                            "review, tries, beam, checks and budgets."),
    fast_check: bool = typer.Option(False, "--fast-check", help="The quick checks of the tests (no efficiency "
                                    "comparison, 10 training steps) instead of the checker's defaults."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the table as JSON here."),
    quiet: bool = typer.Option(False, "--quiet", help="Print one line per session, not per step."),
):
    """Run design sessions from fixed starting points and print valid-design rate, tries, cost and LoC."""
    design = _design_settings(config_file, fast_check)
    ablations = ablation or ["full"]
    unknown = [a for a in ablations if a not in ABLATIONS]
    if unknown:
        _fail(f"unknown ablation(s) {', '.join(unknown)}; choose from {', '.join(ABLATIONS)}")
    backends = [_backend(spec) for spec in (llm or [""])]
    console.print(f"agent benchmark {STARTS_VERSION}: {n} session(s) x {len(backends)} backend(s) x "
                  f"{len(ablations)} ablation(s) in {run_dir}")
    rows: list[Row] = []
    for backend in backends:
        for name in ablations:
            console.rule(f"{backend.label} / {name}")
            try:
                results = run_series(run_dir, backend, name, n, design=design,
                                     on_step=None if quiet else _print_step, on_session=_print_session)
            except BenchmarkError as e:
                console.print(f"[yellow]skipped[/]: {e}")
                continue
            rows.append(summarize(backend.label, name, results))
    if not rows:
        _fail("no series ran")
    if console.width >= TABLE_WIDTH:
        console.print(_table(rows))
    else:  # a narrow terminal or a log file: plain aligned text, never cut
        typer.echo(table_text(rows))
    if json_out:
        save_rows(json_out, rows)
        console.print(f"table written to {json_out}")


def _backend(spec: str):
    from agents.llm import AgentsConfigError

    try:
        return resolve_backend(spec)
    except AgentsConfigError as e:
        _fail(f"--llm {spec!r}: {e}" if spec else str(e))


def _design_settings(path: Path | None, fast_check: bool) -> DesignConfig:
    table: dict = {}
    if path is not None:
        try:
            table = dict(tomllib.loads(path.read_text()).get("design") or {})
        except (OSError, tomllib.TOMLDecodeError) as e:
            _fail(f"run config {path}: {e}")
    if fast_check:
        table["check"] = {**FAST_CHECK, **(table.get("check") or {})}
    try:
        return DesignConfig.from_mapping(table)
    except ValueError as e:
        _fail(f"run config {path}: {e}")


def _print_step(index: int, node: str, status: str) -> None:
    console.print(f"  [dim]{index + 1:>3}[/] [cyan]{node:>9}[/] {status}")


def _print_session(result: SessionResult) -> None:
    colour = {"implemented": "green", "rejected": "yellow"}.get(result.outcome, "red")
    start = f"{result.mode} of {', '.join(result.parents) or 'nothing'}"
    console.print(f"[bold]{result.index + 1:>3}[/] {start}: [{colour}]{result.outcome}[/] in {result.tries} "
                  f"tries, {result.loc} LoC, ${result.dollars:.4f}, {result.wall_s:.0f} s  "
                  f"[dim]{result.reason[:160]}[/]")


def _table(rows: list[Row]) -> Table:
    table = Table(title=f"Agent benchmark ({STARTS_VERSION})")
    for i, column in enumerate(COLUMNS):
        table.add_column(column, justify="left" if i < 2 else "right")
    for row in rows:
        table.add_row(*row_cells(row))
    return table


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)
