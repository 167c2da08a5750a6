"""The agent benchmark: design sessions from fixed starting points, and the paper's table.

The paper compares ways of designing (the full unit-by-unit workflow, direct
whole-block generation, no planner, no observer) by how often a session ends with a
valid design and at what cost. This module runs that comparison for any designer:

    backend = resolve_backend("none")                      # the symbolic designer
    results = run_series(run_dir, backend, "full", n=5)    # 5 sessions, one after another
    print_table([summarize(backend.label, "full", results)])

Starting points are a fixed, versioned list (STARTS, STARTS_VERSION): session i of
every series starts from the same parents, mode and seed, so rows are comparable.
Each (backend, ablation) series has its own run directory under the benchmark's, so
no series sees another's designs (the archive and knowledge store steer proposals and
reviews). A series resumes where it stopped: finished sessions are read back from
its `sessions.jsonl`, and an interrupted one continues from its checkpoint.

The table, per series:
- valid: the share of sessions that ended with an implemented design (every unit
  passed the checker and the observer);
- tries/valid: coder tries (one per unit per attempt; whole blocks in the direct
  ablation; reused units excluded) per valid design: the paper's attempts per design;
- $/valid and tokens/session: model spending (the symbolic designer spends none);
- LoC/valid: lines of code the coder wrote that ended up in the design (accepted,
  not reused; comments and docstrings not counted);
- checker s and wall s per session.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agents.base import Designer
from agents.schemas import UnitCode
from designs.archive import Archive
from designs.tree import normalize_code
from graph import nodes
from graph.configuration import ABLATIONS, DesignConfig
from graph.design import design_session, session_config
from graph.state import initial_state

STARTS_VERSION = "genesys-agent-bench/1"  # bump whenever STARTS changes: results are compared by version


@dataclass(frozen=True)
class Start:
    """Where one benchmark session starts: the mode, the parents and the symbolic designer's seed."""

    mode: str
    parents: tuple[str, ...]
    seed: int


# Mixed so that any prefix (--n 5) holds mutations, a crossover and a scratch design;
# the seeds that train slowly on CPU (RWKV-6, TTT) come late.
STARTS: tuple[Start, ...] = (
    Start("mutation", ("gpt2",), 0),
    Start("mutation", ("llama",), 1),
    Start("crossover", ("gpt2", "llama"), 2),
    Start("mutation", ("gla",), 3),
    Start("scratch", (), 4),
    Start("mutation", ("retnet",), 5),
    Start("mutation", ("mamba2",), 6),
    Start("crossover", ("llama", "gla"), 7),
    Start("mutation", ("hybrid",), 8),
    Start("mutation", ("deltanet",), 9),
    Start("crossover", ("gpt2", "hyena"), 10),
    Start("mutation", ("hyena",), 11),
    Start("mutation", ("gated_deltanet",), 12),
    Start("crossover", ("retnet", "mamba2"), 13),
    Start("scratch", (), 14),
    Start("mutation", ("rwkv6",), 15),
    Start("mutation", ("ttt_linear",), 16),
    Start("crossover", ("deltanet", "llama"), 17),
    Start("mutation", ("gpt2",), 18),
    Start("crossover", ("hybrid", "gated_deltanet"), 19),
)


class BenchmarkError(ValueError):
    """The benchmark cannot run as asked (the message says what to change)."""


def starting_points(n: int) -> list[Start]:
    """The first n starting points; past the list it starts over with new seeds."""
    if n < 1:
        raise BenchmarkError(f"--n must be at least 1, got {n}")
    return [Start(s.mode, s.parents, s.seed + 1000 * (i // len(STARTS)))
            for i, s in ((i, STARTS[i % len(STARTS)]) for i in range(n))]


def ablation_settings(ablation: str) -> dict[str, Any]:
    if ablation not in ABLATIONS:
        raise BenchmarkError(f"unknown ablation {ablation!r}; choose from {', '.join(ABLATIONS)}")
    return dict(ABLATIONS[ablation])


# ---------------------------------------------------------------- backends


@dataclass
class Backend:
    """A designer to benchmark: its label, and either --llm flags (the graph builds the LLM designer
    with the series' knowledge tools) or a designer instance (the symbolic one, or scripted models)."""

    label: str
    llm: list[str] = field(default_factory=list)
    designer: Designer | None = None

    @property
    def symbolic(self) -> bool:
        return self.designer is not None and getattr(self.designer, "name", "") == "symbolic"


def resolve_backend(spec: str) -> Backend:
    """A backend from a --llm value: 'none' (symbolic), '' (as configured: GENESYS_LLM...),
    'provider:model', or 'ROLE=provider:model[,ROLE=provider:model...]'.

    The models are built here once (no request is sent), so a missing key or provider
    package stops the benchmark before any session (agents.llm.AgentsConfigError says
    what to set); the graph then builds the designer with each series' knowledge tools.
    """
    from agents.llm import AgentsConfig, build_models, load_config
    from agents.llm_designer import load_designer

    spec = spec.strip()
    if spec.lower() in ("none", "symbolic"):
        return Backend("symbolic", designer=load_designer(AgentsConfig()))
    flags = [f.strip() for f in spec.split(",") if f.strip()]
    config = load_config(flags=flags)
    if not config.enabled:
        return Backend("symbolic", designer=load_designer(config))
    build_models(config)
    return Backend(config.name, llm=flags)


# ---------------------------------------------------------------- one session's figures


@dataclass
class SessionResult:
    """What the table needs from one session."""

    index: int
    mode: str
    parents: list[str]
    name: str
    outcome: str
    reason: str
    tries: int  # coder tries, reused units excluded
    loc: int  # accepted lines of code the coder wrote
    dollars: float
    tokens: int
    checker_s: float
    wall_s: float

    @property
    def valid(self) -> bool:
        return self.outcome == "implemented"


def code_lines(code: str) -> int:
    """Lines of code without comments, docstrings and blank lines (formatting does not count)."""
    return sum(1 for line in normalize_code(code).splitlines() if line.strip())


def session_result(index: int, start: Start, values: dict, archive: Archive, wall_s: float) -> SessionResult:
    """The figures of one finished session, from its final state and the archive's artifacts."""
    log = [a for a in values.get("attempt_log", []) if not a.get("reused")]
    loc = 0
    for a in log:
        if a.get("chosen") and a.get("ok") and a.get("accept") and a.get("code"):
            loc += code_lines(UnitCode.model_validate(archive.artifacts.get_json(a["code"])).code)
    costs = values.get("costs") or {}
    return SessionResult(
        index=index, mode=start.mode, parents=list(start.parents), name=values.get("name", ""),
        outcome=values.get("outcome") or "unfinished", reason=values.get("reason", ""),
        tries=len({(a["unit"], a["attempt"]) for a in log}), loc=loc, dollars=float(costs.get("dollars", 0.0)),
        tokens=int(costs.get("prompt_tokens", 0) + costs.get("completion_tokens", 0)),
        checker_s=float(costs.get("compute_s", 0.0)), wall_s=round(wall_s, 2))


# ---------------------------------------------------------------- the table


@dataclass
class Row:
    """One line of the paper's table: a backend under one ablation."""

    backend: str
    ablation: str
    sessions: int
    valid: int
    rejected: int
    failed: int  # failed, over budget, invalid or unfinished
    tries_per_valid: float | None
    dollars_per_valid: float | None
    tokens_per_session: float
    loc_per_valid: float | None
    checker_s_per_session: float
    wall_s_per_session: float

    @property
    def valid_rate(self) -> float:
        return self.valid / self.sessions if self.sessions else 0.0


def summarize(backend: str, ablation: str, results: Sequence[SessionResult]) -> Row:
    """The table's row for a series of sessions."""
    n = len(results)
    valid = [r for r in results if r.valid]
    per_valid = (lambda total: total / len(valid)) if valid else (lambda total: None)
    return Row(
        backend=backend, ablation=ablation, sessions=n, valid=len(valid),
        rejected=sum(r.outcome == "rejected" for r in results),
        failed=sum(r.outcome not in ("implemented", "rejected") for r in results),
        tries_per_valid=per_valid(sum(r.tries for r in valid)),
        dollars_per_valid=per_valid(sum(r.dollars for r in results)),  # all spending, per valid design
        tokens_per_session=sum(r.tokens for r in results) / n if n else 0.0,
        loc_per_valid=per_valid(sum(r.loc for r in valid)),
        checker_s_per_session=sum(r.checker_s for r in results) / n if n else 0.0,
        wall_s_per_session=sum(r.wall_s for r in results) / n if n else 0.0)


COLUMNS = ("backend", "ablation", "sessions", "valid", "rejected", "failed", "tries/valid", "$/valid",
           "tokens/session", "LoC/valid", "checker s", "wall s")


def row_cells(row: Row) -> list[str]:
    def num(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    return [row.backend, row.ablation, str(row.sessions), f"{row.valid_rate:.0%} ({row.valid})", str(row.rejected),
            str(row.failed), num(row.tries_per_valid, ".1f"), num(row.dollars_per_valid, ".4f"),
            f"{row.tokens_per_session:.0f}", num(row.loc_per_valid, ".0f"), f"{row.checker_s_per_session:.1f}",
            f"{row.wall_s_per_session:.1f}"]


def table_text(rows: Sequence[Row]) -> str:
    """The table as aligned plain text (the command prints it with rich; this is for files and logs)."""
    cells = [list(COLUMNS)] + [row_cells(r) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in cells]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


# ---------------------------------------------------------------- running a series


def series_dir(root: Path, backend: str, ablation: str) -> Path:
    slug = re.sub(r"[^a-zA-Z0-9.]+", "-", backend).strip("-")[:60] or "backend"
    return root / f"{slug}--{ablation}"


def _check_series(path: Path, header: dict) -> None:
    """A series directory holds one benchmark version, backend, ablation and settings; refuse to mix."""
    marker = path / "benchmark.json"
    if marker.is_file():
        old = json.loads(marker.read_text())
        if old != header:
            changed = sorted(k for k in set(old) | set(header) if old.get(k) != header.get(k))
            raise BenchmarkError(f"{path} holds a series run with other {', '.join(changed)}; "
                                 f"choose another --run-dir to start afresh")
    else:
        path.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps(header, indent=1))


def _done_sessions(path: Path) -> dict[int, SessionResult]:
    done = {}
    log = path / "sessions.jsonl"
    if log.is_file():
        for line in log.read_text().splitlines():
            if line.strip():
                data = json.loads(line)
                done[data["index"]] = SessionResult(**data)
    return done


def _run_session(graph, index: int, start: Start, backend: Backend, path: Path, design: DesignConfig,
                 on_step: Callable[[int, str, str], None] | None) -> tuple[dict, float]:
    """Run (or finish) session `index` of the series; its final state and the wall time it took now."""
    thread = f"bench-{index + 1:02d}"
    config = session_config(thread, designer=backend.designer, run_dir=path, llm=backend.llm or None, design=design)
    snapshot = graph.get_state(config)
    if snapshot.values and not snapshot.next:
        return snapshot.values, 0.0  # finished before the benchmark was stopped
    first = None if snapshot.values else initial_state(start.mode, list(start.parents), seed=start.seed,
                                                       name=f"{thread}-{start.mode}")
    started = time.perf_counter()
    for update in graph.stream(first, config, stream_mode="updates"):
        for node, change in update.items():
            if on_step and isinstance(change, dict) and change.get("status"):
                on_step(index, node, change["status"])
    return graph.get_state(config).values, time.perf_counter() - started


def run_series(root: str | Path, backend: Backend, ablation: str = "full", n: int = 20, *,
               design: DesignConfig | dict | None = None,
               on_step: Callable[[int, str, str], None] | None = None,
               on_session: Callable[[SessionResult], None] | None = None) -> list[SessionResult]:
    """Run the first n starting points with one backend under one ablation; resumes a stopped series."""
    settings = DesignConfig.from_mapping({**(design.model_dump() if isinstance(design, DesignConfig)
                                             else dict(design or {})), **ablation_settings(ablation)})
    if backend.symbolic and settings.direct:
        raise BenchmarkError("the symbolic designer assembles library units one at a time and cannot write a "
                             "whole block directly; run the direct ablation with an LLM (--llm provider:model)")
    path = series_dir(Path(root), backend.label, ablation)
    _check_series(path, {"version": STARTS_VERSION, "backend": backend.label, "ablation": ablation,
                         "design": settings.model_dump(mode="json")})
    done = _done_sessions(path)
    results = []
    try:
        with design_session(path) as graph:
            for index, start in enumerate(starting_points(n)):
                if index not in done:
                    values, wall_s = _run_session(graph, index, start, backend, path, settings, on_step)
                    done[index] = session_result(index, start, values, nodes.archive_for(
                        {"configurable": {"run_dir": str(path)}}), wall_s)
                    with (path / "sessions.jsonl").open("a") as f:
                        f.write(json.dumps(asdict(done[index])) + "\n")
                results.append(done[index])
                if on_session:
                    on_session(done[index])
    finally:
        nodes.close_archives()
    return results


def save_rows(path: str | Path, rows: Sequence[Row]) -> None:
    """The table as JSON, with the version of the starting points it was measured on."""
    Path(path).write_text(json.dumps({"version": STARTS_VERSION,
                                      "rows": [{**asdict(r), "valid_rate": r.valid_rate} for r in rows]}, indent=1))
