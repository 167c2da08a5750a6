"""The observer: rates one implemented unit from its code and its check report."""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from agents.base import ObserverContext, RoleCall
from agents.llm import ask
from agents.prompts import render
from agents.schemas import Observation


def messages(ctx: ObserverContext) -> list[BaseMessage]:
    p = ctx.proposal
    parts = [f"## The proposal: {p.title}\n\n{p.idea}" + (f"\n\nMath:\n{p.math}" if p.math else ""),
             f"## The task: {ctx.task.unit} ({ctx.task.action})\n\n{ctx.task.description}"]
    if ctx.view:
        parts.append(f"## The tree\n```\n{ctx.view}\n```")
    parts.append(f"## The code of {ctx.code.unit}\n```python\n{ctx.code.code.strip()}\n```")
    if ctx.code.rationale:
        parts.append(f"The coder's rationale: {ctx.code.rationale}")
    verdict = "passed" if ctx.report_ok else "FAILED"
    parts.append(f"## The checker's report: {verdict}\n\n{ctx.report}")
    parts.append(f"Write your Observation of {ctx.task.unit}.")
    return [SystemMessage(render("observer")), HumanMessage("\n\n".join(parts))]


def observe(model: BaseChatModel, ctx: ObserverContext, **kwargs) -> RoleCall[Observation]:
    call = ask("observer", model, Observation, messages(ctx), **kwargs)
    if call.output is not None and call.output.unit != ctx.task.unit:
        call.output = call.output.model_copy(update={"unit": ctx.task.unit})
    return call
