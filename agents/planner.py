"""The planner: which units the coder writes, in which order, and what is reused."""

from __future__ import annotations

from functools import partial

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from agents.base import PlanContext, RoleCall
from agents.llm import ask
from agents.prompts import parent_markdown, render
from agents.schemas import Plan


def messages(ctx: PlanContext) -> list[BaseMessage]:
    parts = ["## The accepted proposal\n\n" + ctx.proposal.to_markdown()]
    parts += [parent_markdown(p) for p in ctx.parents]
    parts.append("Write the Plan: the units to implement, in order.")
    return [SystemMessage(render("planner")), HumanMessage("\n\n".join(parts))]


def check(ctx: PlanContext, plan: Plan) -> str | None:
    """A plan the graph can follow: tasks, valid class names, the selected unit first in a mutation."""
    if not plan.tasks:
        return "the plan has no tasks; list at least the unit the proposal changes"
    bad = [t.unit for t in plan.tasks if not t.unit.isidentifier()]
    if bad:
        return f"unit names must be Python class names: {', '.join(map(repr, bad))}"
    selected = ctx.proposal.selected_unit
    if ctx.proposal.mode == "mutation" and selected and plan.tasks[0].unit != selected:
        return f"in a mutation the first task must be the selected unit {selected!r}, not {plan.tasks[0].unit!r}"
    return None


def plan(model: BaseChatModel, ctx: PlanContext, **kwargs) -> RoleCall[Plan]:
    return ask("planner", model, Plan, messages(ctx), check=partial(check, ctx), **kwargs)
