"""Genesys command line: `python cli.py ...` (installed as the console script `genesys`)."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

if not sys.stdout.isatty():
    # Output to a file or a pipe (a log, CI): rich would wrap tables at 80 columns; give them room.
    os.environ.setdefault("COLUMNS", "200")

import typer
from rich.console import Console
from rich.table import Table

from designs.archive import ArchiveError, UnknownDesign
from designs.catalog import entries, load_design_file, open_archive, resolve, run_dir_default
from designs.measure import MeasureError
from designs.sizing import SizingError
from designs.tree import TreeError
from graph.evolution import RunError
from verifier.ladder import LadderError
from verifier.sandbox import measure_isolated

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Genesys: language-model agents that discover language-model architectures.")
designs_app = typer.Typer(no_args_is_help=True, help="The designs: seeds and everything discovered or imported.")
app.add_typer(designs_app, name="designs")
ladder_app = typer.Typer(no_args_is_help=True, help="The ladder of scales designs are verified on.")
app.add_typer(ladder_app, name="ladder")


def _mount_graph_commands() -> None:
    """`run` and `design` live in graph/ (they drive the LangGraph graphs)."""
    from graph.commands import design_app
    from graph.report_commands import leaderboard_command, report_command, show_command
    from graph.run_command import run
    from knowledge.commands import app as library_app

    app.command("run")(fails_cleanly(run))
    app.add_typer(design_app, name="design")
    app.command("leaderboard")(leaderboard_command)
    app.command("show")(show_command)
    app.command("report")(report_command)
    app.add_typer(library_app, name="library", help="The reference library of papers and its search.")
    from graph.benchmark_commands import benchmark_app

    app.add_typer(benchmark_app, name="benchmark")
console = Console()

REFERENCE_SIZE = (256, 4)  # (d_model, n_block) at which `designs list` counts parameters
RunDir = typer.Option(None, "--run-dir", help="Run directory whose archive to use "
                      "[default: $GENESYS_RUN_DIR or runs/default]")


def fails_cleanly(command):
    """Known errors end the command with one line on stderr and exit code 2."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (TreeError, SizingError, UnknownDesign, ArchiveError, MeasureError, LadderError, RunError,
                OSError) as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None

    return run


def _measure_one(tree, **job) -> list[dict]:
    reply = measure_isolated([{"tree": tree.to_dict(), **job}])[0]
    if not reply["ok"]:
        prefix = f"design {tree.name}: " if reply["kind"] == "exception" else ""
        raise MeasureError(prefix + reply["error"])
    return reply["sizes"]


def _paper(meta: dict) -> str:
    paper = meta.get("paper") or {}
    if not paper:
        return ""
    ref = f"arXiv {paper['arxiv']}" if paper.get("arxiv") else paper.get("venue", "")
    return f"{paper.get('title', '')} ({paper.get('year', '')}; {ref})"


@designs_app.command("list")
@fails_cleanly
def designs_list(run_dir: Path = RunDir):
    """Every design: name, family, paper, non-embedding parameters at a reference size."""
    with open_archive(run_dir or run_dir_default()) as archive:
        found = entries(archive)
    replies = measure_isolated([{"tree": e.tree.to_dict(), "sizes": [REFERENCE_SIZE]} for e in found])
    d, n = REFERENCE_SIZE
    table = Table(title=f"designs ({len(found)})")
    for column in ("name", "status", "family", "paper", f"params (d_model={d}, {n} blocks)"):
        table.add_column(column, overflow="fold")
    for entry, reply in zip(found, replies):
        params = f"{reply['sizes'][0]['non_embedding_params']:,}" if reply["ok"] else "does not build"
        table.add_row(entry.name, entry.status, entry.family or "", _paper(entry.tree.meta), params)
    console.print(table)


@designs_app.command("show")
@fails_cleanly
def designs_show(
    name: str,
    target: list[int] = typer.Option([500_000, 3_000_000, 14_000_000], "--target",
                                     help="Non-embedding parameter targets to size the design to"),
    seq_len: int = typer.Option(256, help="Sequence length at which FLOPs per token are measured"),
    run_dir: Path = RunDir,
):
    """A design's unit tree, its description, and its size and FLOPs/token at each target."""
    with open_archive(run_dir or run_dir_default()) as archive:
        tree = resolve(name, archive)
    sizes = _measure_one(tree, targets=target, flops_seq_len=seq_len)  # before printing: errors stay one line
    console.print(tree.view(), highlight=False, markup=False)
    if tree.meta.get("description"):
        console.print(f"\n{tree.meta['description']}", highlight=False, markup=False)
    if _paper(tree.meta):
        console.print(f"paper: {_paper(tree.meta)}", highlight=False, markup=False)
    console.print(f"fingerprint: {tree.fingerprint()}")
    table = Table(title=f"{name} sized to targets (byte vocabulary, FLOPs at {seq_len} tokens)")
    for column in ("target", "d_model", "n_block", "non-emb params", "error", "total params",
                   "fwd FLOPs/token", "train FLOPs/token"):
        table.add_column(column, justify="right")
    for size in sizes:
        table.add_row(f"{size['target']:,}", str(size["d_model"]), str(size["n_block"]),
                      f"{size['non_embedding_params']:,}", f"{size['error']:+.2%}", f"{size['total_params']:,}",
                      f"{size['flops_forward_per_token'] / 1e6:.2f}M", f"{size['flops_train_per_token'] / 1e6:.2f}M")
    console.print(table)


@designs_app.command("export")
@fails_cleanly
def designs_export(name: str, out: Path = typer.Option(..., "--out", help="Python file to write"),
                   run_dir: Path = RunDir):
    """Write a design as one standalone Python module (needs only torch; run it to smoke-test)."""
    with open_archive(run_dir or run_dir_default()) as archive:
        source = resolve(name, archive).compose()
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    partial.write_text(source)
    os.replace(partial, out)
    typer.echo(f"wrote {out} ({len(source.splitlines())} lines); run it with: python {out}")


@designs_app.command("import")
@fails_cleanly
def designs_import(file: Path, name: str = typer.Option(None, help="Store under this name instead"),
                   run_dir: Path = RunDir):
    """Import a design: the Genesys paper's implementation.json layout, or this project's tree JSON."""
    tree = load_design_file(file)
    if name:
        tree.name = name
    size = _measure_one(tree, sizes=[REFERENCE_SIZE])[0]  # it must build before it is stored
    with open_archive(run_dir or run_dir_default()) as archive:
        record = archive.record_design(tree.name, tree.to_dict(), tree.fingerprint(), mode="import",
                                       status="imported", family=tree.meta.get("family"),
                                       meta={"source": str(file)})
    d, n = REFERENCE_SIZE
    typer.echo(f"imported {record.name} ({len(tree.units)} units, {size['non_embedding_params']:,} "
               f"non-embedding params at d_model={d}, {n} blocks) into {archive.location}")


@app.command("check")
@fails_cleanly
def check(
    target: str = typer.Argument(..., help="A seed or archived design name, an exported .py module, or a tree JSON"),
    target_params: int = typer.Option(None, "--target-params", help="The design must size to this many "
                                      "non-embedding parameters (within --param-tolerance)"),
    param_tolerance: float = typer.Option(0.05, "--param-tolerance"),
    efficiency: bool = typer.Option(True, "--efficiency/--no-efficiency",
                                    help="Compare step time, memory and FLOPs with the GPT-2 seed"),
    timeout: float = typer.Option(240.0, "--timeout", help="Seconds before the sandbox is killed"),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON (for the archive or scripts)"),
    run_dir: Path = RunDir,
):
    """Check a design: format (static) and function (in the sandbox). Exit code 1 when it has errors."""
    from verifier.checker import CheckOptions, check_source, check_tree
    from verifier.sandbox import Limits

    options = CheckOptions(target_params=target_params, param_tolerance=param_tolerance, efficiency=efficiency,
                           limits=Limits(timeout_s=timeout))
    path = Path(target)
    with console.status(f"checking {target} (format, then build, causality, gradients, training, efficiency "
                        "in the sandbox)"):
        if path.suffix == ".py" and path.is_file():
            report = check_source(path.read_text(), path.stem, options)
        else:
            if path.suffix == ".json" and path.is_file():
                tree = load_design_file(path)
            else:
                with open_archive(run_dir or run_dir_default()) as archive:
                    tree = resolve(target, archive)
            _, report = check_tree(tree, options)
    if as_json:
        typer.echo(report.to_json())
    else:
        console.print(report.to_markdown(), highlight=False, markup=False)
        if report.isolation:
            iso = report.isolation
            notes = "; ".join(iso.get("notes", [])) or "all in force"
            console.print(f"sandbox: network {iso.get('network')}, filesystem {iso.get('filesystem')}, "
                          f"own PID namespace {iso.get('pid_namespace')}, uid {iso.get('uid', 'unchanged')}; "
                          f"{notes}", highlight=False, markup=False)
    raise typer.Exit(0 if report.ok else 1)


@ladder_app.command("show")
@fails_cleanly
def ladder_show(name: str = typer.Argument("cpu", help="Ladder preset: cpu or gpu")):
    """The rungs of a ladder: size, tokens, context, batch, learning rate, evaluation, budget."""
    from verifier.ladder import get_ladder

    rungs = get_ladder(name)
    table = Table(title=f"ladder {name}")
    for column in ("rung", "kind", "params", "tokens", "steps", "context", "batch", "lr", "evaluation", "budget",
                   "promote", "corpus / tokenizer"):
        table.add_column(column, overflow="fold")
    for r in rungs:
        evaluation = f"{len(r.eval_suite)} synthetic tasks" if r.kind == "synthetic" else "val bpb" + (
            f" + {len(r.eval_suite)} lm-eval tasks" if r.eval_suite else "")
        table.add_row(r.name, r.kind, f"{r.target_params / 1e6:g}M", f"{r.tokens:,}", f"{r.steps:,}", str(r.context),
                      str(r.batch), f"{r.lr:g}", evaluation, "all" if r.budget is None else str(r.budget),
                      f"top {r.promote_fraction:.0%}", "synthetic" if r.kind == "synthetic"
                      else f"{r.corpus} / {r.tokenizer}")
    console.print(table)
    if any(r.kind == "synthetic" for r in rungs):
        console.print("synthetic tasks: " + ", ".join(next(r for r in rungs if r.kind == "synthetic").eval_suite))
    if any(r.eval_suite and r.kind == "lm" for r in rungs):
        console.print("lm-eval tasks: " + ", ".join(next(r for r in rungs if r.eval_suite and r.kind == "lm").eval_suite))


def _verify_with_progress(tree, ladder: str, rung: str, run_dir: Path, seed: int, scale: float, check: bool,
                          archive):
    """Run verify_design in a worker thread and draw its progress (training steps, loss, ETA) meanwhile."""
    import json
    import threading

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from verifier.verify import verify_design

    state: dict = {}
    outcome: dict = {}

    def work():
        try:
            outcome["result"] = verify_design(tree, ladder, rung, run_dir, seed=seed, scale=scale, check=check,
                                              archive=archive, progress=state.update)
        except BaseException as e:  # noqa: BLE001 - re-raised in the main thread
            outcome["error"] = e

    worker = threading.Thread(target=work, daemon=True)
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
               TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(f"{tree.name} @ {ladder}/{rung}", total=None, info="starting")
        worker.start()
        offset = 0  # bytes of the training log already shown: each poll reads only what is new
        while worker.is_alive():
            worker.join(0.5)
            phase = state.get("phase", "")
            if phase == "train" and state.get("log"):
                bar.update(task, total=state["steps"])
                log = Path(state["log"])
                if log.exists():
                    if log.stat().st_size < offset:  # a resumed run cut the log back to its checkpoint
                        offset = 0
                    with log.open("rb") as f:
                        f.seek(offset)
                        new = f.read()
                    complete = new[: new.rfind(b"\n") + 1]  # a line still being written waits
                    offset += len(complete)
                    for line in complete.decode().splitlines():
                        entry = json.loads(line)
                        if "loss" in entry and "step" in entry:
                            bar.update(task, completed=entry["step"], info=f"loss {entry['loss']:.3f}, "
                                       f"{entry.get('tokens_per_s', 0):,.0f} tok/s")
            else:
                bar.update(task, info=phase + (f" ({state['tasks']} tasks)" if phase == "synthetic" else ""))
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


@app.command("verify")
@fails_cleanly
def verify(
    design: str = typer.Argument(..., help="A seed or archived design name, or a tree JSON"),
    ladder: str = typer.Option("cpu", "--ladder", help="Ladder preset (cpu, gpu)"),
    rung: str = typer.Option("lm-xs", "--rung", help="Rung of the ladder (see `ladder show`)"),
    seed: int = typer.Option(0, "--seed", help="Training seed"),
    scale: float = typer.Option(1.0, "--scale", help="Scale the rung's training tokens (smoke runs: 0.01)"),
    check: bool = typer.Option(True, "--check/--no-check", help="Run the full check first (a failing design "
                               "is not trained)"),
    run_dir: Path = RunDir,
):
    """Train and score a design on one rung, in the sandbox; the result goes to the archive."""
    from verifier.ladder import get_rung

    get_rung(ladder, rung)  # a bad rung fails before anything runs
    path = Path(design)
    run_dir = run_dir or run_dir_default()
    with open_archive(run_dir) as archive:
        tree = load_design_file(path) if path.suffix == ".json" and path.is_file() else resolve(design, archive)
        if path.suffix == ".json":
            archive.record_design(tree.name, tree.to_dict(), tree.fingerprint(), mode="import", status="imported",
                                  family=tree.meta.get("family"), meta={"source": str(path)})
        result = _verify_with_progress(tree, ladder, rung, run_dir, seed, scale, check, archive)
    if not result.ok:
        console.print(f"{tree.name} at {ladder}/{rung}: {result.status}: {result.error}", highlight=False,
                      markup=False)
        raise typer.Exit(1)
    table = Table(title=f"{tree.name} at {ladder}/{rung} (seed {seed}, {result.wall_s:.0f} s)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in result.metrics.items():
        text = (f"{value:.4g}" if isinstance(value, float) else
                ", ".join(f"{k} {v:.3f}" for k, v in value.items()) if isinstance(value, dict) else str(value))
        table.add_row(key, text)
    console.print(table)


@ladder_app.command("calibrate")
@fails_cleanly
def ladder_calibrate(
    ladder: str = typer.Option("cpu", "--ladder", help="Ladder preset"),
    seeds: list[str] = typer.Option(None, "--seed-design", help="Seed designs to train [default: all]"),
    last_rung: int = typer.Option(5, "--last-rung-seeds", help="How many seeds (GPT-2 first) train on the last rung"),
    repeats: int = typer.Option(3, "--repeats", help="GPT-2 runs per rung (different seeds): the rung's noise"),
    scale: float = typer.Option(1.0, "--scale", help="Scale every rung's training tokens (smoke runs)"),
    run_dir: Path = RunDir,
):
    """Train every seed on every rung; write fitness per rung and the rank correlation between rungs."""
    from designs.seeds import seed_names
    from verifier.calibrate import calibrate, to_markdown
    from verifier.ladder import get_ladder

    get_ladder(ladder)
    names = seeds or seed_names()
    unknown = sorted(set(names) - set(seed_names()))
    if unknown:
        raise TreeError(f"not seed designs: {', '.join(unknown)}; seeds: {', '.join(seed_names())}")
    ordered = ["gpt2"] + [n for n in names if n != "gpt2"]
    run_dir = run_dir or run_dir_default()
    with open_archive(run_dir) as archive:
        out = calibrate(ladder, run_dir, archive, ordered, ordered[:last_rung], repeats=repeats, scale=scale,
                        progress=lambda p: console.print(f"training {p['design']} on {p['rung']} (seed {p['seed']})",
                                                         highlight=False))
    console.print(to_markdown(out), highlight=False, markup=False)
    console.print(f"written to {Path(run_dir) / 'calibration' / (ladder + '.md')}")


@app.command("export")
@fails_cleanly
def export(
    design: str = typer.Argument(..., help="A trained design of the run (or a seed it verified)"),
    out: Path = typer.Option(..., "--out", help="Directory to write the Hugging Face model to"),
    run_dir: Path = RunDir,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --out"),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="Load it with transformers and generate, in "
                                "the sandbox, comparing logits with the original"),
):
    """Write a design's trained weights as a Hugging Face model directory (AutoModelForCausalLM, trust_remote_code)."""
    from verifier.hf_export import ExportError, export_design

    try:
        result = export_design(design, out, run_dir or run_dir_default(), overwrite=overwrite, verify=verify)
    except ExportError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"wrote {result.out_dir}: {result.model_type}, {result.params:,} parameters "
               f"(d_model {result.d_model} x {result.n_block} blocks), tokenizer {result.tokenizer}")
    if result.check:
        typer.echo(f"loaded with transformers: max |logit difference| {result.check.get('max_abs_logit_diff')}; "
                   f"sample: {result.check.get('text', '')[:120]!r}")


_mount_graph_commands()


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
