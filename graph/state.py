"""The state of one design session, as LangGraph checkpoints it.

Everything here is plain JSON (role outputs as `model_dump()` dicts), so a
checkpoint reads back in any process, Studio included. Code and trees are not:
the unit tree under construction, each candidate's code and each check report
live in the run directory's artifact store (designs/artifacts.py) and the state
carries their content hashes. A checkpoint stays a few kilobytes however big the
design grows (the pitfall STYLE.md warns about).
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

OUTCOMES = ("implemented", "failed", "rejected", "budget", "invalid")
COST_FIELDS = ("calls", "prompt_tokens", "completion_tokens", "dollars", "compute_s")


def add_costs(old: dict | None, new: dict | None) -> dict:
    """Reducer: sum cost totals, overall and per role ({"roles": {role: totals}})."""
    out = {k: (old or {}).get(k, 0) for k in COST_FIELDS}
    out["roles"] = {role: dict(t) for role, t in ((old or {}).get("roles") or {}).items()}
    for key in COST_FIELDS:
        out[key] += (new or {}).get(key, 0)
    for role, totals in ((new or {}).get("roles") or {}).items():
        mine = out["roles"].setdefault(role, {k: 0 for k in COST_FIELDS})
        for key in COST_FIELDS:
            mine[key] += totals.get(key, 0)
    return out


class Candidate(TypedDict, total=False):
    """One implementation of the current unit (the beam holds up to `beam` of them)."""

    unit: str
    code: str | None  # artifact hash of the UnitCode JSON
    tree: str | None  # artifact hash of the working tree with this code in place
    error: str | None  # why it never reached the checker (wrong unit, protected, coder failure)
    report: str | None  # artifact hash of the CheckReport JSON
    ok: bool  # the check passed
    summary: str  # the report's errors, one line each (compact)
    check_s: float  # seconds the check took
    rating: float | None  # the observer's rating
    accept: bool  # the observer accepted it
    notes: str  # the observer's notes
    reused: bool  # taken as is from another design (a reuse task): no coder, no observer


class DesignState(TypedDict, total=False):
    # ---- what the session is asked to do (the graph's input)
    mode: str  # mutation | crossover | scratch
    parents: list[str]  # design names; crossover takes two or more
    references: list[str]  # library record ids suggested by selection
    seed: int  # for the symbolic designer's choices
    name: str  # the new design's name in the archive (chosen at start when not given)

    # ---- bookkeeping
    session: str  # id used in the archive's idempotency keys (the thread id when checkpointed)
    status: str  # one line: what just happened (the CLI and Studio show it)
    cost_seq: int  # model calls recorded so far: the next cost key

    # ---- proposal and review
    proposal: dict | None  # the current Proposal
    proposals: Annotated[list[dict], operator.add]  # every proposal, in order
    reviews: Annotated[list[dict], operator.add]  # every review, with its "round"
    review_round: int  # proposals reviewed so far

    # ---- plan and unit-by-unit implementation
    plan: dict | None  # the Plan; tasks grow as coders declare new children
    protected: list[str]  # units the coder may not change (mutation)
    tree: str | None  # artifact hash of the working tree: the last accepted state
    task_index: int  # the task (unit) being implemented
    attempts: dict[str, int]  # failed tries per unit
    feedback: list[str]  # the current unit's earlier tries: check reports and observer notes
    candidates: list[Candidate]  # the current try's beam
    attempt_log: Annotated[list[dict], operator.add]  # every try of every unit, for the archive

    # ---- costs and the end
    costs: Annotated[dict, add_costs]  # totals overall and per role
    outcome: str | None  # one of OUTCOMES when the session is over
    reason: str  # why it ended that way
    recorded: str | None  # the design's name once it is in the archive


class DesignInput(TypedDict, total=False):
    """What a caller gives (Studio shows this form)."""

    mode: str
    parents: list[str]
    references: list[str]
    seed: int
    name: str


def initial_state(mode: str, parents: list[str], *, references: list[str] | None = None, seed: int = 0,
                  name: str | None = None) -> dict[str, Any]:
    """The graph's input for a new session."""
    state: dict[str, Any] = {"mode": mode, "parents": list(parents), "references": list(references or []),
                             "seed": seed}
    if name:
        state["name"] = name
    return state
