"""The evolution graph: the main job (`python cli.py run`).

    START -> setup -> select -(one Send per worker)-> design -> promote -> select ... -> END

- setup: the archive (seeds recorded) and the baselines verified on the first rung,
  several training seeds each, so every design is compared under the same settings;
- select: stop when a budget is spent, else draw `workers` selections (mode, parents,
  references) from the strategy and fan out one design branch per selection;
- design (parallel branches): one design session (the design graph, checkpointed per
  thread), then, for an implemented and novel design, its verification on the first rung;
- promote: along the ladder, the baselines on each next rung, then the designs that
  rank in the top fraction of a rung within the next rung's budget.

Everything a node does is idempotent: design sessions resume from their own
checkpoints by thread id, a verification already in the archive is not run again, and
the graph itself is checkpointed (RUN_DIR/evolution.sqlite), so `--resume` after a
kill -9 loses nothing and does nothing twice. Budgets: designs, wall minutes (time the
run was actually running), dollars (the agents' ledger), CPU hours (verification).
"""

from __future__ import annotations

import json
import operator
import os
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, Send
from pydantic import BaseModel, Field, ValidationError, model_validator

from designs.catalog import resolve
from graph import nodes
from graph.configuration import DesignConfig
from graph.design import design_session, session_config
from graph.selection import get_strategy, is_novel, view_from_archive
from graph.state import initial_state
from graph.workers import VerificationJob, WorkerError, pool_for
from verifier.ladder import Standing, get_ladder, get_rung, promotions

RUN_FORMAT = 1  # bump when run.json or the evolution state changes incompatibly
RUN_FILE = "run.json"
CHECKPOINTS = "evolution.sqlite"
THREAD = "evolution"


class RunError(ValueError):
    """A run that cannot start or resume: bad settings, another version's run directory."""


class Budget(BaseModel):
    """Whichever limit comes first ends the run (None: no limit)."""

    designs: int | None = Field(None, ge=0, description="design sessions")
    minutes: float | None = Field(None, ge=0, description="wall minutes the run spends running")
    dollars: float | None = Field(None, ge=0, description="LLM spend")
    cpu_hours: float | None = Field(None, ge=0, description="core-hours of verification")

    @model_validator(mode="after")
    def _some_limit(self) -> "Budget":
        if all(v is None for v in (self.designs, self.minutes, self.dollars, self.cpu_hours)):
            raise ValueError("a run needs at least one budget (designs, minutes, dollars or cpu_hours)")
        return self


class RunConfig(BaseModel):
    """Everything that defines a run; written to RUN_DIR/run.json and read back on --resume."""

    format: int = RUN_FORMAT
    ladder: str = "cpu"
    rungs: list[str] | None = Field(None, description="the ladder's rungs this run climbs (default: all)")
    scale: float = Field(1.0, gt=0, description="training tokens of every rung times this")
    corpus: str | None = Field(None, description="language-modeling rungs train on this corpus")
    llm: list[str] = Field(default_factory=list, description="--llm flags; empty: the symbolic designer")
    workers: int = Field(1, ge=1, le=64)
    seed: int = 0
    selection: str = "paper"
    baselines: list[str] = Field(default_factory=lambda: ["gpt2"])
    baseline_repeats: int | None = Field(None, ge=1, description="GPT-2 training seeds per rung, for the "
                                         "noise (default: the rung's repeats_for_noise)")
    promote_after: int = Field(4, ge=1, description="designs a rung must have verified before any climbs on")
    rung_scale: dict[str, float] = Field(default_factory=dict, description="per rung, a further factor on "
                                         "`scale` (say lm-s: 0.4 for a short run)")
    budget: Budget = Field(default_factory=lambda: Budget(minutes=15))
    design: dict = Field(default_factory=dict, description="DesignConfig settings of every session")
    ray: str | None = Field(None, description="Ray cluster address (HOST:PORT): verification jobs run there")
    archive: str | None = Field(None, description="the archive's database URL (several machines); "
                                "default: the run directory")

    @model_validator(mode="after")
    def _consistent(self) -> "RunConfig":
        names = [r.name for r in get_ladder(self.ladder)]
        unknown = [r for r in self.rungs or [] if r not in names]
        if unknown:
            raise ValueError(f"ladder {self.ladder!r} has no rung {', '.join(unknown)}; rungs: {', '.join(names)}")
        unknown = [r for r in self.rung_scale if r not in names]
        if unknown:
            raise ValueError(f"rung_scale: ladder {self.ladder!r} has no rung {', '.join(unknown)}")
        if any(not v > 0 for v in self.rung_scale.values()):
            raise ValueError("rung_scale: factors must be positive")
        if self.rungs is not None and not self.rungs:
            raise ValueError("rungs: name at least one rung")
        if "gpt2" not in self.baselines:
            raise ValueError("baselines must include gpt2: fitness is measured against it")
        DesignConfig.from_mapping(self.design)
        get_strategy(self.selection)
        return self

    def scale_for(self, rung: str) -> float:
        """The factor on `rung`'s training tokens: `scale` times the rung's own factor, if any."""
        return self.scale * self.rung_scale.get(rung, 1.0)

    def rung_names(self) -> list[str]:
        names = [r.name for r in get_ladder(self.ladder)]
        return [n for n in names if self.rungs is None or n in self.rungs]


def save_run_config(run_dir: Path, config: RunConfig) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / (RUN_FILE + ".tmp")
    tmp.write_text(config.model_dump_json(indent=1))
    os.replace(tmp, run_dir / RUN_FILE)


def load_run_config(run_dir: Path) -> RunConfig:
    path = run_dir / RUN_FILE
    if not path.exists():
        raise RunError(f"{run_dir} is not a run directory (no {RUN_FILE}); start one with `python cli.py run`")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise RunError(f"{path} is corrupt: {e}") from None
    if data.get("format") != RUN_FORMAT:
        raise RunError(f"{path} was written by run format {data.get('format')!r}; this Genesys reads format "
                       f"{RUN_FORMAT}: start a new run directory")
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        raise RunError(f"{path}: {_errors(e)}") from None


def _errors(e: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, err['loc'])) or 'run'}: {err['msg']}" for err in e.errors())


# ---------------------------------------------------------------- state


class EvolutionState(TypedDict, total=False):
    generation: int  # selections drawn so far, in rounds of `workers`
    sessions: Annotated[list[dict], operator.add]  # one per finished design branch
    elapsed_s: float  # wall seconds the run has been running (downtime between kill and resume excluded)
    mark: float  # time.time() when elapsed_s was last brought up to date
    stop: str  # why the run ended


def _conf(config: RunnableConfig) -> dict:
    return dict(config.get("configurable") or {})


def _run(config: RunnableConfig) -> tuple[Path, RunConfig]:
    conf = _conf(config)
    return Path(conf["run_dir"]), RunConfig.model_validate(conf["run"])


def _emit(event: dict) -> None:
    try:
        get_stream_writer()(event)
    except RuntimeError:  # not inside a streaming run
        pass


def _threads(run: RunConfig) -> int:
    return max(1, (os.cpu_count() or 2) // run.workers)


# ---------------------------------------------------------------- verification


def rung_key(run: RunConfig, rung: str) -> str:
    return f"{run.ladder}/{rung}"


def verify(archive, run_dir: Path, run: RunConfig, design: str, rung: str, seed: int = 0) -> dict:
    """One verification, unless the archive already has it (or its recorded failure)."""
    return verify_many([(design, rung, seed)], archive, run_dir, run)[0]


def verify_many(jobs: list[tuple[str, str, int]], archive, run_dir: Path, run: RunConfig) -> list[dict]:
    """Run verifications on the run's workers: `workers` threads here, or the Ray cluster (--ray)."""
    try:
        pool = pool_for(run.ray, run.workers)
        return pool.run([verification_job(archive, run_dir, run, *job) for job in jobs], archive, emit=_emit)
    except WorkerError as e:
        raise RunError(str(e)) from None


def verification_job(archive, run_dir: Path, run: RunConfig, design: str, rung: str, seed: int) -> VerificationJob:
    return VerificationJob(design, run.ladder, rung, seed=seed, scale=run.scale_for(rung), corpus=run.corpus,
                           threads=_threads(run), run_dir=str(run_dir.absolute()), archive=run.archive or "",
                           tree=resolve(design, archive).to_dict())


def baseline_jobs(run: RunConfig, rung: str) -> list[tuple[str, str, int]]:
    repeats = run.baseline_repeats or get_rung(run.ladder, rung).repeats_for_noise
    return [(b, rung, s) for b in run.baselines for s in range(repeats if b == "gpt2" else 1)]


# ---------------------------------------------------------------- nodes


def setup(state: EvolutionState, config: RunnableConfig) -> dict:
    """Open the archive and verify the baselines on the first rung."""
    run_dir, run = _run(config)
    archive = nodes.archive_for(config)
    first = run.rung_names()[0]
    _emit({"event": "phase", "phase": f"baselines on {first}"})
    verify_many(baseline_jobs(run, first), archive, run_dir, run)
    return {"generation": 0, **_clock(state, config)}


def _clock(state: EvolutionState, config: RunnableConfig) -> dict:
    """Running time so far: what the state had, plus the time since its mark or since this process
    started, whichever is later (the time a killed run spent down does not count)."""
    now = time.time()
    started = _conf(config).get("process_started", now)
    return {"elapsed_s": state.get("elapsed_s", 0.0) + now - max(state.get("mark", started), started), "mark": now}


def spent(state: EvolutionState, config: RunnableConfig) -> dict:
    """What the run has used so far, against its budget."""
    run_dir, run = _run(config)
    archive = nodes.archive_for(config)
    elapsed = _clock(state, config)["elapsed_s"]
    dollars = sum(v["dollars"] for v in archive.cost_summary().values())
    cpu_s = sum(v.wall_time_s for v in archive.verifications()) * _threads(run)
    return {"designs": len(state.get("sessions", [])), "elapsed_s": elapsed, "dollars": dollars,
            "cpu_hours": cpu_s / 3600}


def over_budget(used: dict, budget: Budget, count_designs: bool = True) -> str | None:
    """Why the run must stop starting work, or None. count_designs=False: only the budgets that climbs
    spend (time, dollars, CPU); the design budget limits sessions, not the verification of their designs."""
    if count_designs and budget.designs is not None and used["designs"] >= budget.designs:
        return f"design budget reached ({used['designs']} sessions)"
    if budget.minutes is not None and used["elapsed_s"] >= budget.minutes * 60:
        return f"time budget reached ({used['elapsed_s'] / 60:.1f} of {budget.minutes:g} minutes)"
    if budget.dollars is not None and used["dollars"] >= budget.dollars:
        return f"dollar budget reached (${used['dollars']:.2f})"
    if budget.cpu_hours is not None and used["cpu_hours"] >= budget.cpu_hours:
        return f"CPU budget reached ({used['cpu_hours']:.2f} core-hours)"
    return None


def select(state: EvolutionState, config: RunnableConfig) -> Command:
    """Stop on a spent budget; else one design branch per worker."""
    run_dir, run = _run(config)
    used = spent(state, config)
    clock = _clock(state, config)
    reason = over_budget(used, run.budget)
    if reason:
        _emit({"event": "stop", "reason": reason})
        return Command(goto=END, update={**clock, "stop": reason})
    archive = nodes.archive_for(config)
    view = view_from_archive(archive, run.ladder)
    strategy = get_strategy(run.selection)
    generation = state.get("generation", 0) + 1
    n = run.workers if run.budget.designs is None else min(run.workers, run.budget.designs - used["designs"])
    sends = []
    for k in range(n):
        rng = random.Random(f"{run.seed}:{generation}:{k}")
        choice = strategy.select(view, rng)
        thread = f"g{generation:04d}{chr(97 + k)}"
        sends.append(Send("design", {"thread": thread, "mode": choice.mode, "parents": list(choice.parents),
                                     "references": list(choice.references), "seed": rng.randrange(2**31),
                                     "reason": choice.reason}))
        _emit({"event": "selected", "thread": thread, **choice.to_dict()})
    return Command(goto=sends, update={**clock, "generation": generation})


def design(task: dict, config: RunnableConfig) -> dict:
    """One design session (resumed if its thread was interrupted), then the first rung."""
    run_dir, run = _run(config)
    archive = nodes.archive_for(config)
    thread = task["thread"]
    conf = session_config(thread, run_dir=run_dir, llm=run.llm, design=DesignConfig.from_mapping(run.design))
    if _conf(config).get("designer") is not None:
        conf["configurable"]["designer"] = _conf(config)["designer"]
    name = f"{thread}-{task['mode']}"
    _emit({"event": "design", "thread": thread, "name": name, "mode": task["mode"], "parents": task["parents"]})
    with design_session(run_dir) as graph:
        snapshot = graph.get_state(conf)
        if snapshot.values and not snapshot.next:
            values = snapshot.values  # finished before the kill
        else:
            start = None if snapshot.values else initial_state(task["mode"], task["parents"],
                                                               references=task["references"], seed=task["seed"],
                                                               name=name)
            for update in graph.stream(start, conf, stream_mode="updates"):
                for node, change in update.items():
                    if isinstance(change, dict) and change.get("status"):
                        _emit({"event": "design_step", "thread": thread, "node": node, "status": change["status"]})
            values = graph.get_state(conf).values
    outcome = values.get("outcome") or "failed"
    session = {"thread": thread, "name": values.get("name", name), "mode": task["mode"], "parents": task["parents"],
               "outcome": outcome, "reason": values.get("reason", ""), "costs": values.get("costs", {})}
    _emit({"event": "designed", **session})
    if outcome == "implemented":
        record = archive.get_design(session["name"])
        novelty = is_novel(record.fingerprint, archive, name=record.name) if "duplicate_of" not in record.meta else None
        if novelty is None or not novelty:
            session["outcome"] = "duplicate"
            session["reason"] = novelty.reason if novelty is not None else \
                f"same code as {', '.join(record.meta['duplicate_of'])}"
        else:
            session["verification"] = verify(archive, run_dir, run, session["name"], run.rung_names()[0])["status"]
    return {"sessions": [session]}


def promote(state: EvolutionState, config: RunnableConfig) -> dict:
    """Climb the ladder: each next rung gets its baselines, then the designs that rank high enough below it."""
    run_dir, run = _run(config)
    archive = nodes.archive_for(config)
    names = run.rung_names()
    _emit_best(archive, run, names)
    for lower, upper in zip(names, names[1:]):
        standings = rung_standings(archive, run, lower)
        if len([s for s in standings if s.design not in run.baselines]) < run.promote_after:
            break  # too few designs measured there to rank them
        there = {v.design for v in archive.verifications(rung=rung_key(run, upper))} - set(run.baselines)
        decision = promotions(standings, get_rung(run.ladder, lower), get_rung(run.ladder, upper),
                              already_there=len(there), baselines=tuple(run.baselines))
        climbing = [d for d in decision.promoted if d not in there]
        if not climbing:
            continue
        if _climb_refused(state, config, run, f"climb to {upper}"):
            return {}
        _emit({"event": "phase", "phase": f"{len(climbing)} design(s) climb to {upper}"})
        verify_many(baseline_jobs(run, upper), archive, run_dir, run)
        for start in range(0, len(climbing), run.workers):
            if start and _climb_refused(state, config, run, f"{len(climbing) - start} climb(s) to {upper}"):
                return {}
            verify_many([(d, upper, 0) for d in climbing[start:start + run.workers]], archive, run_dir, run)
    return {}


def _climb_refused(state: EvolutionState, config: RunnableConfig, run: RunConfig, what: str) -> bool:
    """Climbs are new work: none starts once the run's time, dollar or CPU budget is spent (a resumed
    run with a larger budget takes them up); work already started finishes. Says so when refused."""
    reason = over_budget(spent(state, config), run.budget, count_designs=False)
    if reason:
        _emit({"event": "phase", "phase": f"{what} not started: {reason}"})
    return reason is not None


def _emit_best(archive, run: RunConfig, names: list[str]) -> None:
    """The best design so far, at the highest rung any design reached, for the display."""
    for rung in reversed(names):
        standings = [s for s in rung_standings(archive, run, rung) if s.design not in run.baselines]
        if standings:
            best = max(standings, key=lambda s: s.fitness)
            _emit({"event": "best", "design": best.design, "rung": rung, "fitness": best.fitness,
                   "noise": best.noise})
            return


def rung_standings(archive, run: RunConfig, rung: str) -> list[Standing]:
    """Fitness and noise of every design verified at `rung`, against the GPT-2 runs there."""
    from verifier.fitness import mean_fitness

    r = get_rung(run.ladder, rung)
    runs: dict[str, list[dict]] = {}
    for v in archive.verifications(rung=rung_key(run, rung)):
        if r.kind == "lm" and v.metrics.get("bpb") is None:
            continue
        runs.setdefault(v.design, []).append(v.metrics)
    base = runs.get("gpt2")
    if not base:
        return []
    out = []
    for design, metrics in runs.items():
        mean = mean_fitness(rung, r.kind, metrics, base)
        out.append(Standing(design, mean.fitness, mean.sigma))
    return out


# ---------------------------------------------------------------- the graph


def build_graph(checkpointer=None):
    builder = StateGraph(EvolutionState)
    builder.add_node("setup", setup)
    builder.add_node("select", select, destinations=("design", END))
    builder.add_node("design", design)
    builder.add_node("promote", promote)
    builder.add_edge(START, "setup")
    builder.add_edge("setup", "select")
    builder.add_edge("design", "promote")
    builder.add_edge("promote", "select")
    return builder.compile(checkpointer=checkpointer, name="evolution")


@contextmanager
def evolution(run_dir: Path) -> Iterator[Any]:
    """The evolution graph checkpointed to RUN_DIR/evolution.sqlite."""
    run_dir.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(run_dir / CHECKPOINTS), check_same_thread=False)
    try:
        saver = SqliteSaver(conn)
        saver.setup()
        yield build_graph(saver)
    finally:
        conn.close()


def run_config(run_dir: Path, run: RunConfig, designer=None) -> RunnableConfig:
    conf: dict[str, Any] = {"thread_id": THREAD, "run_dir": str(run_dir), "run": run.model_dump(),
                            "process_started": time.time()}
    if designer is not None:
        conf["designer"] = designer
    # No max_concurrency: the fan-out is already `workers` wide, and the sync stream's own waiter
    # takes a slot of that limit (with 1 the nodes would never be scheduled).
    return {"configurable": conf, "recursion_limit": 10_000}


def run_evolution(run_dir: Path, run: RunConfig | None = None, *, resume: bool = False, designer=None,
                  on_event: Callable[[dict], None] | None = None) -> dict:
    """Start (or resume) a run and drive it to the end of its budget; returns the final state."""
    run_dir = Path(run_dir)
    if resume:
        run = load_run_config(run_dir)
    else:
        if run is None:
            raise RunError("a new run needs its settings")
        if (run_dir / RUN_FILE).exists():
            raise RunError(f"{run_dir} already holds a run: resume it with --resume {run_dir}, "
                           "or choose another --run-dir")
        save_run_config(run_dir, run)
    config = run_config(run_dir, run, designer)
    try:
        with evolution(run_dir) as graph:
            snapshot = graph.get_state(config)
            if resume and snapshot.values and not snapshot.next:
                return dict(snapshot.values)  # the run had already ended
            start = None if (resume and snapshot.values) else {"elapsed_s": 0.0}
            for mode, chunk in graph.stream(start, config, stream_mode=["custom", "updates"]):
                if mode == "custom" and on_event:
                    on_event(chunk)
            return dict(graph.get_state(config).values)
    finally:
        from graph.workers import close_pools

        close_pools()
        nodes.close_archives()
