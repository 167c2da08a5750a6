"""The nodes of the design graph: small functions from the session state to an update.

Each node does one step of the paper's workflow (propose, review, plan, code,
check, observe, finish) and says where to go next with `Command(goto=...)`.
What a node needs beyond the state comes from the runnable config: the designer
(`configurable["designer"]`, or one built from `configurable["llm"]`, or the
symbolic designer), the run directory holding the archive, and the settings
(graph.configuration.DesignConfig).

Nodes never raise for a designer's misbehaviour: a failed role call, code for the
wrong or a protected unit, a tree edit that does not apply, all become recorded,
bounded retries or a clean end of the session with its reason.

The knowledge engine (knowledge/) serves three steps: the LLM designer's proposer
and reviewer search it through tools, the reviewer's context lists the designs and
papers nearest the proposal, and an implemented design is indexed for later
sessions. It is an aid, never a requirement: when it fails, the failure is logged
and recorded as an archive event and the session goes on without it.

The paper's ablations (DesignConfig.direct, use_planner, use_observer) change the
planner, coder and observer steps; graph/benchmark.py compares them.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END
from langgraph.types import Command, interrupt

from agents.base import (
    CoderContext,
    Designer,
    ObserverContext,
    ParentBrief,
    PlanContext,
    ProposalContext,
    ReviewContext,
    RoleCall,
)
from agents.schemas import Observation, Plan, Proposal, Review, UnitCode, UnitTask
from designs.archive import Archive, ArchiveError, UnknownDesign
from designs.catalog import open_archive, resolve, run_dir_default
from designs.gau import UnitDecl, UnitSpec
from designs.tree import TreeError, UnitTree
from graph.configuration import DesignConfig
from graph.state import COST_FIELDS, Candidate, DesignState
from verifier.report import CheckReport

MAX_FEEDBACK_CHARS = 4000  # of one check report in the coder's feedback (and the checkpoint)
MAX_UNITS = 16  # tasks a plan may grow to as coders declare children: bounds a runaway session

# ---------------------------------------------------------------- what nodes get from the config

_archives: dict[str, Archive] = {}
_designers: dict[str, Designer] = {}
_lock = threading.Lock()


def configurable(config: RunnableConfig | None) -> dict:
    return dict((config or {}).get("configurable") or {})


def run_dir(config: RunnableConfig | None) -> Path:
    return Path(configurable(config).get("run_dir") or run_dir_default())


def archive_for(config: RunnableConfig | None) -> Archive:
    """The run's archive (opened once per process; the seed library recorded in it).

    configurable["archive"] (or the evolution's run settings' "archive"), when set, is where the run
    directory's archive lives: a database URL for runs on several machines. Once opened, every node
    of that run directory gets it, design sessions included."""
    key = str(run_dir(config).absolute())
    conf = configurable(config)
    with _lock:
        if key not in _archives:
            _archives[key] = open_archive(key, conf.get("archive") or (conf.get("run") or {}).get("archive"))
        return _archives[key]


def close_archives() -> None:
    """Close the archives nodes opened and forget the knowledge stores (tests and the CLI call this at the end)."""
    with _lock:
        for archive in _archives.values():
            archive.close()
        _archives.clear()
    with _store_lock:
        _stores.clear()


def designer_for(config: RunnableConfig | None) -> Designer:
    """The designer: an instance passed in the config, else agents.llm_designer.load_designer.

    `configurable["llm"]` holds `--llm` flags ('provider:model' or 'ROLE=provider:model');
    without them the environment (GENESYS_LLM, ...) decides, and with no LLM configured
    at all the symbolic designer designs. An LLM designer built here gets the knowledge
    tools of the run directory's store (unless the `knowledge` setting is off); the
    symbolic designer needs none, so no store is opened for it.
    """
    conf = configurable(config)
    if conf.get("designer") is not None:
        return conf["designer"]
    flags = conf.get("llm") or []
    flags = [flags] if isinstance(flags, str) else [f"{k}={v}" for k, v in flags.items()] \
        if isinstance(flags, dict) else list(flags)
    use_knowledge = settings(config).knowledge != "off"
    key = repr((str(run_dir(config).absolute()), flags, use_knowledge))
    with _lock:
        if key in _designers:
            return _designers[key]
    from agents.llm import load_config
    from agents.llm_designer import load_designer

    agents_config = load_config(flags=flags)
    tools = knowledge_tools(config) if agents_config.enabled and use_knowledge else []
    designer = load_designer(agents_config, tools=tools)
    with _lock:
        return _designers.setdefault(key, designer)


# ---------------------------------------------------------------- the knowledge engine (never fatal)

_stores: dict[str, Any] = {}  # run dir -> KnowledgeStore, or None when it could not be opened
_store_lock = threading.Lock()
log = logging.getLogger(__name__)


def open_store(path: Path):
    """The run directory's knowledge store (knowledge.store.KnowledgeStore; tests swap the embedding)."""
    from knowledge.store import KnowledgeStore

    return KnowledgeStore(path)


def knowledge_store(config: RunnableConfig | None, *, create: bool = False):
    """The run's KnowledgeStore, opened once per process, or None where it is not used.

    Setting `knowledge`: off: never; on: always; auto: when `create` (an LLM designer is
    being built) or when the run directory already holds a store, so a symbolic run in a
    fresh directory never pays the first index (~30-60 s on 2 cores) nor the model load (~8 s).
    A store that fails to open is logged once and treated as absent.
    """
    mode = settings(config).knowledge
    path = run_dir(config).absolute()
    key = str(path)
    if mode == "off":
        return None
    with _store_lock:
        if key not in _stores:
            if mode == "auto" and not create and not (path / "knowledge" / "store.json").is_file():
                return None
            try:
                _stores[key] = open_store(path)
            except Exception as e:  # a broken store never stops a design session
                log.warning("knowledge store of %s unavailable: %s: %s", path, type(e).__name__, e)
                _stores[key] = None
        return _stores[key]


def knowledge_tools(config: RunnableConfig | None) -> list:
    """The knowledge tools (knowledge.tools.make_tools) on the run's store; [] when it cannot open."""
    store = knowledge_store(config, create=True)
    if store is None:
        return []
    from knowledge.tools import make_tools

    try:
        return make_tools(store)
    except Exception as e:
        log.warning("knowledge tools unavailable: %s: %s", type(e).__name__, e)
        return []


def knowledge_failed(state: DesignState, config: RunnableConfig, step: str, error: BaseException) -> None:
    """Log a knowledge-engine failure and record it as an archive event; the session carries on."""
    message = f"{type(error).__name__}: {error}"
    log.warning("knowledge engine failed at %s of %s: %s", step, state.get("name"), message)
    try:
        archive_for(config).record_event("knowledge_error", {"step": step, "error": message[:2000]},
                                         design=state.get("name"), key=f"knowledge:{state.get('session')}:{step}")
    except Exception:  # the event is a courtesy; the log line above already says it
        pass


def nearest_lines(state: DesignState, config: RunnableConfig, proposal: Proposal) -> list[str]:
    """The earlier designs and library papers nearest the proposal (novelty), as markdown lines.

    The parents are left out (the reviewer sees them in full) and so is the design itself.
    """
    store = knowledge_store(config)
    if store is None:
        return []
    try:
        return store.nearest(proposal.to_markdown(), k=5, exclude=[state.get("name", ""), *state["parents"]]).lines()
    except Exception as e:
        knowledge_failed(state, config, f"nearest-{state.get('review_round', 0)}", e)
        return []


def index_design(state: DesignState, config: RunnableConfig, tree: UnitTree) -> None:
    """Put an implemented design in the store, so later sessions find it (similar_designs, nearest)."""
    store = knowledge_store(config)
    if store is None:
        return
    proposal = Proposal.model_validate(state["proposal"]) if state.get("proposal") else None
    described = UnitTree(tree.name, tree.root, tree.units, tree.declares,
                         {k: v for k, v in tree.meta.items() if k != "description"})  # not the parent's words
    meta = {"title": proposal.title if proposal else state["name"], "status": "implemented", "mode": state["mode"],
            "parents": ",".join(state.get("parents", [])), "fingerprint": tree.fingerprint()}
    try:
        store.add_design(state["name"], described, meta, proposal.to_markdown() if proposal else "")
    except Exception as e:
        knowledge_failed(state, config, "index", e)


def settings(config: RunnableConfig | None) -> DesignConfig:
    return DesignConfig.from_runnable_config(config)


# ---------------------------------------------------------------- small helpers


def load_tree(archive: Archive, digest: str) -> UnitTree:
    return UnitTree.from_dict(archive.artifacts.get_json(digest))


def put_tree(archive: Archive, tree: UnitTree) -> str:
    return archive.artifacts.put_json(tree.to_dict())


def current_task(state: DesignState) -> UnitTask:
    return UnitTask.model_validate(state["plan"]["tasks"][state.get("task_index", 0)])


def spend(state: DesignState, config: RunnableConfig, calls: list[RoleCall], role: str) -> dict:
    """Record the usages of role calls in the archive (idempotent keys) and sum them for the state."""
    archive = archive_for(config)
    seq = state.get("cost_seq", 0)
    costs = {k: 0 for k in COST_FIELDS}
    costs["roles"] = {}
    for call in calls:
        for usage in call.usage:
            archive.record_cost(f"{state['session']}:{seq}", role=role, model=usage.model,
                                prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
                                dollars=usage.dollars, design=state.get("name"))
            seq += 1
            row = {"calls": 1, "prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
                   "dollars": usage.dollars, "compute_s": 0.0}
            mine = costs["roles"].setdefault(role, {k: 0 for k in COST_FIELDS})
            for key, value in row.items():
                costs[key] += value
                mine[key] += value
    return {"costs": costs, "cost_seq": seq}


def over_budget(state: DesignState, spent: dict, config: RunnableConfig) -> str | None:
    """Why the session must stop spending, or None. `spent` is this node's costs update."""
    cfg = settings(config)
    dollars = (state.get("costs") or {}).get("dollars", 0) + spent["costs"]["dollars"]
    tokens = sum((state.get("costs") or {}).get(k, 0) + spent["costs"][k]
                 for k in ("prompt_tokens", "completion_tokens"))
    if cfg.budget_dollars is not None and dollars >= cfg.budget_dollars:
        return f"design budget reached: ${dollars:.4f} spent of ${cfg.budget_dollars:.4f}"
    if cfg.budget_tokens is not None and tokens >= cfg.budget_tokens:
        return f"design budget reached: {tokens} tokens spent of {cfg.budget_tokens}"
    if cfg.run_budget_dollars is not None:
        run = sum(t["dollars"] for t in archive_for(config).cost_summary().values())
        if run >= cfg.run_budget_dollars:
            return f"run budget reached: ${run:.4f} spent of ${cfg.run_budget_dollars:.4f}"
    return None


def spend_or_stop(state: DesignState, config: RunnableConfig, calls: list[RoleCall], role: str
                  ) -> tuple[dict, Command | None]:
    """Record the calls' costs; when the budget is spent, the Command that ends the session."""
    update = spend(state, config, calls, role)
    reason = over_budget(state, update, config)
    if reason:
        return update, Command(goto="finish", update={**update, "outcome": "budget", "reason": reason,
                                                      "status": f"{role}: {reason}"})
    return update, None


def end_session(outcome: str, reason: str, **update: Any) -> Command:
    return Command(goto="finish", update={**update, "outcome": outcome, "reason": reason,
                                          "status": f"{outcome}: {reason}"})


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "design"


def parent_briefs(archive: Archive, parents: list[str]) -> list[ParentBrief]:
    """The parents as roles see them: tree, view, proposal and verification results."""
    briefs = []
    for name in parents:
        tree = resolve(name, archive)
        record = archive.get_design(name)
        proposal = record.proposal or {}
        text = Proposal.model_validate(proposal).to_markdown() if proposal.get("title") else ""
        results = "\n".join(
            f"- rung {v.rung} seed {v.seed}: " + ", ".join(f"{k} {_short(m)}" for k, m in v.metrics.items()
                                                         if not isinstance(m, (dict, list)))
            for v in archive.verifications(design=name)
        )
        briefs.append(ParentBrief(name=name, tree=tree.to_dict(), view=tree.view(), proposal=text,
                                  results=results))
    return briefs


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _children_of(archive: Archive, parents: list[str], exclude: str | None) -> list:
    return [r for r in archive.list_designs() if set(r.parents) & set(parents) and r.name != exclude]


# ---------------------------------------------------------------- nodes: start, propose, review


def start(state: DesignState, config: RunnableConfig) -> Command:
    """Check the request (mode, parents), name the design, and open the archive."""
    mode, parents = state.get("mode") or "mutation", list(state.get("parents") or [])
    session = configurable(config).get("thread_id") or state.get("session") or uuid.uuid4().hex
    base = {"mode": mode, "parents": parents, "session": str(session), "review_round": 0, "task_index": 0,
            "attempts": {}, "feedback": [], "candidates": [], "cost_seq": 0}
    need = {"mutation": (1, 1), "crossover": (2, 8), "scratch": (0, 8)}
    if mode not in need:
        return Command(goto=END, update={**base, "outcome": "invalid",
                                         "reason": f"mode {mode!r} is not one of {sorted(need)}"})
    low, high = need[mode]
    if not low <= len(parents) <= high or len(set(parents)) != len(parents):
        return Command(goto=END, update={**base, "outcome": "invalid",
                                         "reason": f"{mode} takes {low} to {high} distinct parents, got {parents}"})
    archive = archive_for(config)
    try:
        for name in parents:
            archive.get_design(name)
    except UnknownDesign as e:
        return Command(goto=END, update={**base, "outcome": "invalid", "reason": str(e)})
    name = state.get("name") or f"{'-'.join(parents) or 'scratch'}-{mode}-{str(session)[:8]}"
    return Command(goto="proposer", update={**base, "name": name,
                                            "status": f"start: {mode} of {', '.join(parents) or 'nothing'}"})


def proposer(state: DesignState, config: RunnableConfig) -> Command:
    """Write a proposal (a revision when the reviewer sent the last one back)."""
    archive = archive_for(config)
    round_ = state.get("review_round", 0)
    previous = Proposal.model_validate(state["proposal"]) if state.get("proposal") else None
    reviews = [Review.model_validate({k: v for k, v in r.items() if k != "round"})
               for r in state.get("reviews", []) if r.get("round") == round_ - 1] if previous else []
    ctx = ProposalContext(
        mode=state["mode"], parents=parent_briefs(archive, state["parents"]),
        siblings=[r.proposal["title"] for r in _children_of(archive, state["parents"], state.get("name"))
                  if isinstance(r.proposal, dict) and r.proposal.get("title")],
        references=state.get("references", []), previous=previous, reviews=reviews,
        seed=state.get("seed", 0) + round_)
    call = designer_for(config).propose(ctx)
    update, stop = spend_or_stop(state, config, [call], "proposer")
    if stop:
        return stop
    if not call.ok:
        return end_session("failed", f"proposer: {call.error or 'no proposal'}", **update)
    proposal = call.output.model_copy(update={"mode": state["mode"], "parents": list(state["parents"])})
    data = proposal.model_dump(mode="json")
    return Command(goto="reviewer", update={**update, "proposal": data, "proposals": [data],
                                            "status": f"proposer: {proposal.title!r} (round {round_ + 1})"})


def _proposal_problem(proposal: Proposal, archive: Archive, parents: list[str]) -> str | None:
    """What makes a proposal impossible to implement as stated (checked before any review)."""
    if proposal.mode != "mutation":
        return None
    units = resolve(parents[0], archive).units
    if proposal.selected_unit not in units:
        return (f"a mutation must name the one unit of {parents[0]} that changes (selected_unit); got "
                f"{proposal.selected_unit!r}, units are: {', '.join(units)}")
    return None


def reviewer(state: DesignState, config: RunnableConfig) -> Command:
    """Rate the proposal; below the threshold it goes back to the proposer, up to N rounds."""
    archive, cfg = archive_for(config), settings(config)
    proposal = Proposal.model_validate(state["proposal"])
    round_ = state.get("review_round", 0)
    problem = _proposal_problem(proposal, archive, state["parents"])
    update: dict = {"costs": {}, "cost_seq": state.get("cost_seq", 0)}
    if problem:  # the graph's own review: no model call is spent on an unimplementable proposal
        review = Review(ratings={"novelty": 1, "soundness": 1, "feasibility": 1, "expected_gain": 1}, overall=1,
                        verdict="revise", summary=problem, suggestions=[problem])
    else:
        siblings = [f"- {r.name} ({r.status}): {(r.proposal or {}).get('title', r.mode)}"
                    for r in _children_of(archive, state["parents"], state.get("name"))][-10:]
        nearest = nearest_lines(state, config, proposal) + siblings
        ctx = ReviewContext(proposal=proposal, parents=parent_briefs(archive, state["parents"]), nearest=nearest,
                            known_fingerprints=[r.fingerprint for r in archive.list_designs()])
        call = designer_for(config).review(ctx)
        update, stop = spend_or_stop(state, config, [call], "reviewer")
        if stop:
            return stop
        if not call.ok:
            return end_session("failed", f"reviewer: {call.error or 'no review'}", **update)
        review = call.output
    passed = review.overall >= cfg.review_threshold and review.verdict != "reject"
    update.update(reviews=[{"round": round_, **review.model_dump(mode="json")}], review_round=round_ + 1,
                  status=f"reviewer: {review.overall:.1f}/5 {review.verdict} (round {round_ + 1})")
    if passed:
        return Command(goto="human" if cfg.interactive else "planner", update=update)
    if round_ + 1 >= cfg.max_review_rounds:
        return end_session("rejected", f"the proposal stayed below {cfg.review_threshold} after "
                           f"{round_ + 1} review round(s); last: {review.summary}", **update)
    return Command(goto="proposer", update=update)


def human(state: DesignState, config: RunnableConfig) -> Command:
    """Interactive sessions: a person approves, edits or rejects the reviewed proposal."""
    answer = interrupt({"question": "approve, edit or reject this proposal?", "proposal": state["proposal"],
                        "review": (state.get("reviews") or [None])[-1]})
    answer = answer if isinstance(answer, dict) else {"action": str(answer)}
    action = answer.get("action", "approve")
    if action == "reject":
        return end_session("rejected", f"rejected by the user: {answer.get('reason', 'no reason given')}")
    if action == "edit":
        try:
            edited = Proposal.model_validate({**state["proposal"], **(answer.get("proposal") or {})})
        except ValueError as e:
            return end_session("failed", f"the edited proposal is not a valid proposal: {e}")
        data = edited.model_copy(update={"mode": state["mode"], "parents": state["parents"]}).model_dump(mode="json")
        return Command(goto="planner", update={"proposal": data, "proposals": [data],
                                               "status": "human: proposal edited"})
    return Command(goto="planner", update={"status": "human: approved"})


# ---------------------------------------------------------------- plan


def protected_units(tree: UnitTree, selected: str) -> list[str]:
    """Mutation: the parent's units outside the selected unit's subtree (shared ones included)."""
    reached: list[str] = []

    def visit(name: str) -> None:
        if name in reached or name == selected or name not in tree.units:
            return
        reached.append(name)
        for child in tree.units[name].children:
            visit(child)

    visit(tree.root)
    return sorted(reached)


def _starting_tree(state: DesignState, archive: Archive, plan: Plan) -> UnitTree:
    """The tree the coder edits: the (first) parent's, or for scratch an empty one with the root declared."""
    if state["parents"]:
        parent = resolve(state["parents"][0], archive)
        return UnitTree(state["name"], parent.root, parent.units, parent.declares,
                        {**parent.meta, "parents": list(state["parents"])})
    root = plan.tasks[0]
    return UnitTree(state["name"], root.unit, {}, {root.unit: UnitDecl(root.unit, root.description)},
                    {"parents": []})


def _class_name(title: str) -> str:
    """A GAU class name from a proposal title: 'gated short conv' -> 'GatedShortConvBlock'."""
    words = re.findall(r"[A-Za-z0-9]+", title)
    name = "".join(w[:1].upper() + w[1:] for w in words)[:40] or "New"
    name = name if name[0].isalpha() else f"Block{name}"
    return name if name.endswith("Block") else f"{name}Block"


def _trivial_plan(state: DesignState, archive: Archive, proposal: Proposal) -> Plan:
    """Ablation 'no planner': one task for the unit the proposal changes (a mutation's selected unit,
    the first parent's root, or a new root); children the coder declares join the plan as it goes."""
    if state["mode"] == "mutation" and proposal.selected_unit:
        unit, action = proposal.selected_unit, "modify"
    elif state["parents"]:
        unit, action = resolve(state["parents"][0], archive).root, "modify"
    else:
        unit, action = _class_name(proposal.title), "new"
    return Plan(tasks=[UnitTask(unit=unit, action=action, description=proposal.idea)],
                notes="No planner (ablation): implement the proposal starting from this unit.")


DIRECT_TASK = ("Direct generation: write the whole block {unit} in one piece, as one unit. Define one GAUBase "
               "class {unit} that computes the complete block (normalization, token mixing, channel mixing, "
               "residual connections); anything it needs is a helper torch.nn.Module (with `forward`, not a GAU) "
               "or function in the same code. Declare no new children. The proposal: {idea}")


def _direct_plan(state: DesignState, archive: Archive, proposal: Proposal) -> tuple[Plan, UnitTree]:
    """Ablation 'direct': one task, the whole block, on a tree that holds only its declared root."""
    if state["parents"]:
        parent = resolve(state["parents"][0], archive)
        root, meta = parent.root, {**parent.meta, "parents": list(state["parents"]), "direct": True}
    else:
        root, meta = _class_name(proposal.title), {"parents": [], "direct": True}
    task = UnitTask(unit=root, action="new", description=DIRECT_TASK.format(unit=root, idea=proposal.idea))
    tree = UnitTree(state["name"], root, {}, {root: UnitDecl(root, f"the whole block: {proposal.title}")}, meta)
    return Plan(tasks=[task], notes="Direct generation (ablation): the whole block in one unit, checked and "
                                    "retried as a whole."), tree


def planner(state: DesignState, config: RunnableConfig) -> Command:
    """Order the units to implement; mutation keeps the selected unit first and the rest protected.

    Ablations: `direct` plans the whole block as one task; without `use_planner` the
    tasks come from the proposal alone (no planner call).
    """
    archive, cfg = archive_for(config), settings(config)
    proposal = Proposal.model_validate(state["proposal"])
    if cfg.direct:
        plan, tree = _direct_plan(state, archive, proposal)
        return Command(goto="coder", update={
            "plan": plan.model_dump(mode="json"), "protected": [], "tree": put_tree(archive, tree), "task_index": 0,
            "status": f"planner: direct generation of the whole block {tree.root}"})
    update: dict = {}
    if cfg.use_planner:
        call = designer_for(config).plan(PlanContext(proposal=proposal,
                                                     parents=parent_briefs(archive, state["parents"])))
        update, stop = spend_or_stop(state, config, [call], "planner")
        if stop:
            return stop
        if not call.ok or not call.output.tasks:
            return end_session("failed", f"planner: {call.error or 'the plan has no tasks'}", **update)
        plan = call.output
    else:
        plan = _trivial_plan(state, archive, proposal)
    protected: list[str] = []
    tree = _starting_tree(state, archive, plan)
    if state["mode"] == "mutation":
        protected = protected_units(tree, proposal.selected_unit)
        kept = [t for t in plan.tasks if t.unit not in protected]
        if not kept or kept[0].unit != proposal.selected_unit:
            first = next((t for t in kept if t.unit == proposal.selected_unit),
                         UnitTask(unit=proposal.selected_unit, action="modify", description=proposal.idea))
            kept = [first] + [t for t in kept if t is not first]
        if len(kept) != len(plan.tasks):
            dropped = sorted({t.unit for t in plan.tasks} & set(protected))
            plan.notes = (plan.notes + f"\nDropped tasks for protected units: {', '.join(dropped)}.").strip()
        plan.tasks = kept
    return Command(goto="coder", update={
        **update, "plan": plan.model_dump(mode="json"), "protected": protected, "tree": put_tree(archive, tree),
        "task_index": 0, "status": f"planner: {len(plan.tasks)} unit(s): " + ", ".join(t.unit for t in plan.tasks)})


# ---------------------------------------------------------------- the unit loop: code, check, observe


def _reuse_source(task: UnitTask, archive: Archive) -> UnitTree | None:
    """The library/archive subtree a reuse task names ('design:Unit'), or None."""
    if task.action != "reuse" or not task.source or ":" not in task.source:
        return None
    design, unit = task.source.split(":", 1)
    try:
        return resolve(design, archive).subtree(unit)
    except (TreeError, UnknownDesign, ArchiveError, KeyError):
        return None


def apply_code(tree: UnitTree, code: UnitCode, protected: list[str], task: UnitTask, *,
               direct: bool = False) -> UnitTree:
    """The tree with the coder's unit in place; TreeError says why the code cannot go in.

    `direct` (the ablation): the unit is the whole block, so it may declare no children.
    """
    if code.unit != task.unit:
        raise TreeError(f"the code is for unit {code.unit!r}, but the task is unit {task.unit!r}; "
                        f"write the class {task.unit}")
    if direct and code.new_children:
        raise TreeError(f"direct generation writes the whole block in one unit, but the code declares children "
                        f"{', '.join(c.name for c in code.new_children)}; define them as helper nn.Modules "
                        f"inside the code of {task.unit} instead")
    if code.unit in protected:
        raise TreeError(f"unit {code.unit} is protected in this mutation (protected: {', '.join(protected)}); "
                        "only the selected unit and its new children may change")
    if code.unit not in tree.units and code.unit not in tree.declares:
        raise TreeError(f"unit {code.unit} is not in the tree yet: no unit declares it. Implement the unit that "
                        f"instantiates it first, declaring {code.unit} among its new children")
    taken = [c.name for c in code.new_children if c.name in protected]
    if taken:
        raise TreeError(f"new children {taken} have the names of protected units; give them new names")
    declares = {c.name: UnitDecl(c.name, c.requirements, list(c.inputs), list(c.outputs))
                for c in code.new_children if c.name not in tree.units}
    old = tree.units.get(code.unit)
    decl = tree.declares.get(code.unit)
    spec = UnitSpec(code.unit, code.document or (old.spec.document if old else decl.requirements if decl else ""),
                    list(old.spec.inputs if old else decl.inputs if decl else ["X"]),
                    list(old.spec.outputs if old else decl.outputs if decl else ["Y"]))
    return tree.replace(code.unit, code.code, args=code.args or None, spec=spec, declares=declares,
                        desc=code.document or None)


def _reuse_candidate(task: UnitTask, tree: UnitTree, archive: Archive) -> Candidate | None:
    source = _reuse_source(task, archive)
    if source is None:
        return None
    try:
        grafted = tree.graft(source, at=task.unit)
    except TreeError:
        return None
    unit = grafted.units[task.unit]
    code = UnitCode(unit=task.unit, code=unit.code, args=unit.args, document=unit.desc,
                    rationale=f"reused as is from {task.source}")
    return Candidate(unit=task.unit, code=archive.artifacts.put_json(code.model_dump(mode="json")),
                     tree=put_tree(archive, grafted), error=None, rating=None, accept=True, reused=True,
                     notes=f"reused from {task.source}")


def coder(state: DesignState, config: RunnableConfig) -> Command:
    """Implement the current unit: up to `beam` candidates, each put into a copy of the working tree."""
    archive, cfg = archive_for(config), settings(config)
    task = current_task(state)
    tree = load_tree(archive, state["tree"])
    attempt = state.get("attempts", {}).get(task.unit, 0) + 1
    reused = _reuse_candidate(task, tree, archive) if attempt == 1 else None
    if reused:
        return Command(goto="checker", update={"candidates": [reused],
                                               "status": f"coder: {task.unit} reused from {task.source}"})
    ctx = CoderContext(
        proposal=Proposal.model_validate(state["proposal"]), plan=Plan.model_validate(state["plan"]), task=task,
        tree=tree.to_dict(), view=tree.view(), current_code=tree.units[task.unit].code if task.unit in tree.units
        else None, declaration=tree.declares[task.unit].to_dict() if task.unit in tree.declares else None,
        feedback=list(state.get("feedback", [])), attempt=attempt, protected=list(state.get("protected", [])))
    if cfg.direct and state["parents"]:  # the whole block is rewritten: show it whole, from the parents
        parents = [resolve(name, archive) for name in state["parents"]]
        ctx.view = "\n\n".join(p.view() for p in parents)
        ctx.current_code = "\n\n".join(_block_source(p) for p in parents)
    designer = designer_for(config)
    calls = [designer.implement(ctx) for _ in range(cfg.beam)]
    update, stop = spend_or_stop(state, config, calls, "coder")
    if stop:
        return stop
    candidates, seen = [], set()
    for call in calls:
        cand = _candidate(call, tree, task, state.get("protected", []), archive, direct=cfg.direct)
        if cand.get("code") and cand["code"] in seen:
            continue  # the same code twice in one beam is checked once
        seen.add(cand.get("code"))
        candidates.append(cand)
    fine = sum(1 for c in candidates if not c.get("error"))
    return Command(goto="checker", update={**update, "candidates": candidates,
                                           "status": f"coder: {task.unit} try {attempt}, "
                                                     f"{fine}/{len(candidates)} candidate(s) to check"})


def _block_source(tree: UnitTree) -> str:
    """A design's code unit by unit, root first: what a direct coder rewrites as one piece."""
    return "\n\n".join(f"# ---- {tree.name}: unit {name}\n{tree.units[name].code.strip()}"
                       for name in tree.reachable() if name in tree.units)


def _candidate(call: RoleCall, tree: UnitTree, task: UnitTask, protected: list[str], archive: Archive, *,
               direct: bool = False) -> Candidate:
    if not call.ok:
        return Candidate(unit=task.unit, code=None, tree=None, error=f"coder: {call.error or 'no code'}")
    code_hash = archive.artifacts.put_json(call.output.model_dump(mode="json"))
    try:
        new_tree = apply_code(tree, call.output, protected, task, direct=direct)
    except TreeError as e:
        return Candidate(unit=task.unit, code=code_hash, tree=None, error=str(e))
    return Candidate(unit=task.unit, code=code_hash, tree=put_tree(archive, new_tree), error=None)


def check_candidate(tree: UnitTree, unit: str, config: RunnableConfig) -> tuple[UnitTree, CheckReport]:
    """Format-check the tree's units and functionally check it with stand-ins for unwritten children.

    Returns the tree with the checker's safe auto-fixes applied to `unit` and the report.
    """
    from verifier.checker import check_tree

    try:
        stubbed = tree.with_stubs()
    except TreeError as e:
        report = CheckReport(design=tree.name, stages=["tree"])
        report.error("tree", str(e), "Declare every child the unit instantiates (new_children).", unit)
        return tree, report
    fixed, report = check_tree(stubbed, settings(config).check.options(), functional=True)
    if fixed.units[unit].code != tree.units[unit].code:
        tree = tree.replace(unit, fixed.units[unit].code)
    return tree, report


def checker(state: DesignState, config: RunnableConfig) -> Command:
    """Check every candidate in the sandbox; the reports go to the artifact store."""
    archive = archive_for(config)
    checked, compute = [], 0.0
    for cand in state.get("candidates", []):
        cand = dict(cand)
        if not cand.get("error"):
            started = time.perf_counter()
            tree, report = check_candidate(load_tree(archive, cand["tree"]), cand["unit"], config)
            cand["check_s"] = round(time.perf_counter() - started, 2)
            compute += cand["check_s"]
            cand.update(tree=put_tree(archive, tree), report=archive.artifacts.put_json(report.to_dict()),
                        ok=report.ok, summary="; ".join(f"{f.check}: {f.message.splitlines()[0][:200]}"
                                                        for f in report.errors))
        checked.append(cand)
    seq = state.get("cost_seq", 0)
    if compute:
        archive.record_cost(f"{state['session']}:{seq}", role="checker", model="sandbox", compute_s=compute,
                            design=state.get("name"))
        seq += 1
    passed = sum(1 for c in checked if c.get("ok"))
    costs = {"compute_s": compute, "roles": {"checker": {"compute_s": compute}}}
    return Command(goto="observer", update={"candidates": checked, "cost_seq": seq, "costs": costs,
                                            "status": f"checker: {current_task(state).unit}: {passed}/{len(checked)} "
                                                      f"passed ({compute:.1f} s)"})


def _rank(cand: Candidate) -> tuple:
    """Best candidate first: the check passed, the observer accepted, the higher rating."""
    return (bool(cand.get("ok")), bool(cand.get("accept")), cand.get("rating") or 0.0)


def observer(state: DesignState, config: RunnableConfig) -> Command:
    """Rate each checked candidate, keep the best; on failure roll back and retry, up to K tries.

    Without `use_observer` (the ablation) no rating is asked for: the check alone decides.
    """
    archive, cfg = archive_for(config), settings(config)
    task = current_task(state)
    proposal = Proposal.model_validate(state["proposal"])
    designer, calls, rated = designer_for(config), [], []
    for cand in state.get("candidates", []):
        cand = dict(cand)
        if cand.get("report") and not cand.get("reused") and not cfg.use_observer:
            cand.update(rating=None, accept=True, notes="")  # ablation: the check alone decides
        elif cand.get("report") and not cand.get("reused"):
            report = CheckReport.from_dict(archive.artifacts.get_json(cand["report"]))
            code = UnitCode.model_validate(archive.artifacts.get_json(cand["code"]))
            call = designer.observe(ObserverContext(proposal=proposal, task=task, code=code,
                                                    report=report.to_markdown(), report_ok=report.ok,
                                                    view=load_tree(archive, cand["tree"]).view()))
            calls.append(call)
            cand.update(_observation(call, cfg.observer_accept))
        rated.append(cand)
    update, stop = spend_or_stop(state, config, calls, "observer")
    if stop:
        return stop
    best = max(rated, key=_rank)
    attempt = state.get("attempts", {}).get(task.unit, 0) + 1
    log = [{"unit": task.unit, "attempt": attempt, "chosen": c is best,
            **{k: c.get(k) for k in ("code", "report", "ok", "error", "summary", "rating", "accept", "notes",
                                     "check_s", "reused")}} for c in rated]
    update.update(attempt_log=log, candidates=rated)
    if best.get("ok") and best.get("accept"):
        return _accept(state, archive, best, task, update)
    return _retry(state, cfg, best, task, attempt, update, archive)


def _observation(call: RoleCall[Observation], accept_at: float) -> dict:
    if not call.ok:  # no rating: the check alone decides, and the failure is on record
        return {"rating": None, "accept": True, "notes": f"observer unavailable: {call.error}"}
    obs = call.output
    return {"rating": obs.rating, "accept": obs.accept and obs.rating >= accept_at,
            "notes": obs.notes + ("".join(f"\n- {s}" for s in obs.suggestions) if obs.suggestions else "")}


def _accept(state: DesignState, archive: Archive, best: Candidate, task: UnitTask, update: dict) -> Command:
    """The unit is done: its tree becomes the working tree; new children join the plan."""
    tree = load_tree(archive, best["tree"])
    plan = dict(state["plan"])
    tasks = list(plan["tasks"])
    planned = {t["unit"] for t in tasks[state["task_index"] + 1:]}
    for name in tree.missing():
        if name not in planned:
            decl = tree.declares[name]
            tasks.append(UnitTask(unit=name, action="new", description=decl.requirements).model_dump(mode="json"))
    index = state["task_index"] + 1
    # a later task for a unit already in the tree with nothing to change ('reuse' of itself) is skipped
    while index < len(tasks) and tasks[index]["action"] == "reuse" and tasks[index]["unit"] in tree.units \
            and not tasks[index].get("source"):
        index += 1
    update.update(tree=best["tree"], plan={**plan, "tasks": tasks}, task_index=index, feedback=[], candidates=[],
                  status=f"observer: {task.unit} accepted (rating {best.get('rating') or '-'})")
    if len(tasks) > MAX_UNITS:
        return end_session("failed", f"the plan grew to {len(tasks)} units (limit {MAX_UNITS}): the coder keeps "
                           "declaring new children", **update)
    if index >= len(tasks):
        if tree.missing():
            return end_session("failed", f"units declared but never implemented: {tree.missing()}", **update)
        return Command(goto="finish", update={**update, "outcome": "implemented",
                                              "reason": f"{len(tree.reachable())} units implemented and checked"})
    return Command(goto="coder", update=update)


def _retry(state: DesignState, cfg: DesignConfig, best: Candidate, task: UnitTask, attempt: int, update: dict,
           archive: Archive) -> Command:
    """The unit failed this try: the working tree stays as it was (rolled back), feedback goes to the coder."""
    feedback = list(state.get("feedback", []))
    if best.get("report"):
        report = CheckReport.from_dict(archive.artifacts.get_json(best["report"]))
        feedback.append(f"Try {attempt}: check report\n{report.to_markdown()[:MAX_FEEDBACK_CHARS]}")
    if best.get("error"):
        feedback.append(f"Try {attempt}: the code was not used: {best['error']}")
    if best.get("notes"):
        feedback.append(f"Try {attempt}: observer ({best.get('rating') or '-'}/5): {best['notes']}")
    attempts = {**state.get("attempts", {}), task.unit: attempt}
    why = best.get("error") or best.get("summary") or f"observer rating {best.get('rating')} below the bar"
    update.update(attempts=attempts, feedback=feedback, candidates=[],
                  status=f"observer: {task.unit} try {attempt} failed: {why[:160]}")
    if attempt >= cfg.max_unit_tries:
        return end_session("failed", f"unit {task.unit} failed {attempt} tries; last: {why}", **update)
    return Command(goto="coder", update=update)


# ---------------------------------------------------------------- the end: the archive record


def finish(state: DesignState, config: RunnableConfig) -> dict:
    """Record the session's design in the archive: implemented, or failed/rejected with its reasons."""
    archive = archive_for(config)
    outcome = state.get("outcome") or "failed"
    if state.get("tree"):
        tree = load_tree(archive, state["tree"])
    elif state.get("parents"):
        parent = resolve(state["parents"][0], archive)
        tree = UnitTree(state["name"], parent.root, parent.units, parent.declares, dict(parent.meta))
    else:
        tree = UnitTree(state["name"], "", {}, {}, {})
    status = {"implemented": "implemented", "rejected": "rejected"}.get(outcome, "failed")
    family = None
    if state.get("parents"):
        family = archive.get_design(state["parents"][0]).family
    meta = {"outcome": outcome, "reason": state.get("reason", ""), "session": state.get("session"),
            "designer": getattr(designer_for(config), "name", "designer"),
            "proposals": state.get("proposals", []), "plan": state.get("plan"),
            "attempts": state.get("attempt_log", []), "costs": state.get("costs", {}),
            "protected": state.get("protected", [])}
    duplicates = [r.name for r in archive.find_by_fingerprint(tree.fingerprint()) if r.name != state["name"]]
    if duplicates and outcome == "implemented":
        meta["duplicate_of"] = duplicates
    archive.record_design(state["name"], tree.to_dict(), tree.fingerprint(), mode=state["mode"], status=status,
                          family=family, parents=state.get("parents", []), proposal=state.get("proposal"),
                          reviews=state.get("reviews", []), meta=meta)
    archive.record_event("design_session", {"outcome": outcome, "reason": state.get("reason", ""),
                                            "costs": state.get("costs", {}),
                                            "tries": len({(a["unit"], a["attempt"]) for a in state.get("attempt_log", [])})},
                         design=state["name"], key=f"design-session:{state['session']}")
    if outcome == "implemented":
        index_design(state, config, tree)
    return {"recorded": state["name"], "outcome": outcome, "status": f"finish: {state['name']} recorded as {status}"}
