"""`python cli.py design ...`: one design session from the command line, streamed as it runs.

    python cli.py design --parent gpt2                              # symbolic designer, mutation
    python cli.py design --parent gpt2 --parent llama --llm openai:gpt-4.1
    python cli.py design --parent gpt2 --llm coder=anthropic:claude-sonnet-4-5 --interactive
    python cli.py design --resume 3f9a1b2c7d4e                       # continue a killed session

Each step prints one line: the node, what it did (attempt, ratings, check outcome)
and the cost so far. The session is checkpointed in the run directory, so a killed
one continues from its last step with `--resume THREAD`.
"""

from __future__ import annotations

import json
import tomllib
import uuid
from pathlib import Path
from typing import Any

import typer
from langgraph.types import Command
from rich.console import Console
from rich.markdown import Markdown

from designs.archive import ArchiveError, UnknownDesign
from designs.catalog import run_dir_default
from designs.tree import TreeError
from graph import nodes
from graph.configuration import DesignConfig
from graph.design import design_session, session_config
from graph.state import add_costs, initial_state

design_app = typer.Typer(add_completion=False, help="Run one design session (propose, review, implement, check).")
console = Console()


@design_app.callback(invoke_without_command=True)
def design(
    parent: list[str] = typer.Option([], "--parent", help="Parent design (repeat for crossover)."),
    mode: str | None = typer.Option(None, "--mode", help="mutation | crossover | scratch "
                                    "[default: by the number of parents]"),
    llm: list[str] = typer.Option([], "--llm", help="provider:model for every role, or ROLE=provider:model "
                                  "(repeatable); none: the symbolic designer"),
    run_dir: Path | None = typer.Option(None, "--run-dir", help="Run directory [default: $GENESYS_RUN_DIR or "
                                        "runs/default]"),
    resume: str | None = typer.Option(None, "--resume", help="Thread id of a session to continue."),
    interactive: bool = typer.Option(False, "--interactive", help="Pause after the review: approve, edit, reject."),
    name: str | None = typer.Option(None, "--name", help="Name of the new design [default: from parents]"),
    seed: int = typer.Option(0, "--seed", help="Seed of the symbolic designer's choices."),
    budget: float | None = typer.Option(None, "--budget", help="Dollars this session may spend."),
    config_file: Path | None = typer.Option(None, "--config", help="Run config (TOML); its [design] table "
                                            "sets review, tries, beam, checks and budgets."),
):
    """Design one block: propose, review, plan, implement unit by unit, check, record in the archive."""
    run_dir = run_dir or run_dir_default()
    mode = mode or ("scratch" if not parent else "mutation" if len(parent) == 1 else "crossover")
    designer = _designer(llm, run_dir)
    llm_budget = _llm_budget(llm)
    settings = _settings(config_file, interactive=interactive, budget=budget or llm_budget.per_design,
                         tokens=llm_budget.per_design_tokens)
    thread = resume or uuid.uuid4().hex[:12]
    config = session_config(thread, designer=designer, run_dir=run_dir, design=settings)
    try:
        with design_session(run_dir) as graph:
            if resume:
                snapshot = graph.get_state(config)
                if not snapshot.values:
                    _fail(f"no session {resume!r} in {Path(run_dir) / 'checkpoints.sqlite'}")
                first: Any = _answer(snapshot) if _pending(snapshot) else None
            else:
                first = initial_state(mode, parent, seed=seed, name=name)
            console.print(f"session [bold]{thread}[/] (continue a killed session with --resume {thread})")
            values = _stream(graph, first, config)
    except (TreeError, UnknownDesign, ArchiveError, OSError) as e:
        _fail(str(e))
    finally:
        nodes.close_archives()
    _summary(values)


def _designer(flags: list[str], run_dir: Path):
    """The designer for --llm flags (symbolic without them), an LLM one with the run's knowledge
    tools; a backend that cannot start ends here."""
    from agents.llm import AgentsConfigError, load_config
    from agents.llm_designer import load_designer

    try:
        config = load_config(flags=flags)
        tools = nodes.knowledge_tools({"configurable": {"run_dir": str(run_dir)}}) if config.enabled else []
        return load_designer(config, tools=tools)
    except AgentsConfigError as e:
        _fail(str(e))


def _settings(path: Path | None, *, interactive: bool, budget: float | None, tokens: int | None) -> DesignConfig:
    """The [design] table of a run config, with the command's flags on top."""
    table: dict = {}
    if path is not None:
        try:
            table = dict(tomllib.loads(path.read_text()).get("design") or {})
        except (OSError, tomllib.TOMLDecodeError) as e:
            _fail(f"run config {path}: {e}")
    table["interactive"] = interactive or table.get("interactive", False)
    if budget is not None:
        table["budget_dollars"] = budget
    if tokens is not None:
        table.setdefault("budget_tokens", tokens)
    try:
        return DesignConfig.from_mapping(table)
    except ValueError as e:
        _fail(f"run config {path}: {e}")


def _llm_budget(flags: list[str]):
    """The per-design budgets of the LLM config (GENESYS_LLM_CONFIG), agents.costs.Budget."""
    from agents.llm import load_config

    return load_config(flags=flags).budget()


def _stream(graph, first: Any, config: dict) -> dict:
    """Run the graph, printing one line per step; answer interrupts; return the final state."""
    costs: dict = {}
    while True:
        for update in graph.stream(first, config, stream_mode="updates"):
            for node, change in update.items():
                if node == "__interrupt__":
                    continue
                change = change or {}
                costs = add_costs(costs, change.get("costs"))
                console.print(f"[cyan]{node:>9}[/] {change.get('status', '')}  [dim]{_cost_line(costs)}[/]")
        snapshot = graph.get_state(config)
        if not _pending(snapshot):
            return snapshot.values
        first = _answer(snapshot)


def _pending(snapshot) -> bool:
    return any(task.interrupts for task in snapshot.tasks)


def _answer(snapshot) -> Command:
    """Ask the person at the terminal about the reviewed proposal (the `human` node's interrupt)."""
    value = next(i.value for t in snapshot.tasks for i in t.interrupts)
    console.print(Markdown(_proposal_markdown(value.get("proposal") or {})))
    review = value.get("review") or {}
    if review:
        console.print(f"[bold]review[/]: {review.get('overall')}/5 {review.get('verdict')}: {review.get('summary')}")
    action = typer.prompt("approve, edit or reject", default="approve",
                          type=typer.Choice(["approve", "edit", "reject"]))
    if action == "edit":
        edited = typer.edit(json.dumps(value.get("proposal") or {}, indent=2), extension=".json")
        try:
            return Command(resume={"action": "edit", "proposal": json.loads(edited or "{}")})
        except json.JSONDecodeError as e:
            _fail(f"the edited proposal is not JSON: {e}")
    if action == "reject":
        return Command(resume={"action": "reject", "reason": typer.prompt("why", default="not worth building")})
    return Command(resume={"action": "approve"})


def _proposal_markdown(proposal: dict) -> str:
    from agents.schemas import Proposal

    try:
        return Proposal.model_validate(proposal).to_markdown()
    except ValueError:
        return json.dumps(proposal, indent=2)


def _cost_line(costs: dict) -> str:
    tokens = costs.get("prompt_tokens", 0) + costs.get("completion_tokens", 0)
    return f"${costs.get('dollars', 0):.4f}, {tokens} tokens, checker {costs.get('compute_s', 0):.0f} s"


def _summary(values: dict) -> None:
    outcome = values.get("outcome") or "unfinished"
    colour = {"implemented": "green", "rejected": "yellow"}.get(outcome, "red")
    console.print(f"[bold {colour}]{outcome}[/]: {values.get('reason', '')}")
    if values.get("recorded"):
        console.print(f"design [bold]{values['recorded']}[/] recorded; {_cost_line(values.get('costs') or {})}")
    if outcome == "invalid":
        raise typer.Exit(2)


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)
