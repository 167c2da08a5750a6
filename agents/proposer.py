"""The proposer: from parents, siblings and references to a structured Proposal.

It may search the knowledge engine (tools) for a few rounds first. Its answer is
checked against the session: a mutation must select a unit that the parent has.
The mode and parents are the session's, whatever the model wrote.
"""

from __future__ import annotations

from functools import partial

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from agents.base import ProposalContext, RoleCall
from agents.llm import ask
from agents.prompts import parent_markdown, render
from agents.schemas import Proposal


def messages(ctx: ProposalContext) -> list[BaseMessage]:
    parts = [f"Mode: {ctx.mode}. Parents: {', '.join(p.name for p in ctx.parents) or 'none (scratch)'}."]
    parts += [parent_markdown(p) for p in ctx.parents]
    if ctx.siblings:
        parts.append("Earlier children of these parents (do not repeat them):\n"
                     + "\n".join(f"- {s}" for s in ctx.siblings))
    if ctx.references:
        parts.append("Library records suggested for this session: " + ", ".join(ctx.references))
    if ctx.previous is not None:
        parts.append("Your previous proposal, sent back by the reviewer:\n\n" + ctx.previous.to_markdown())
        for i, review in enumerate(ctx.reviews, 1):
            tips = "\n".join(f"- {s}" for s in review.suggestions) or "- (none)"
            parts.append(f"Review {i}: overall {review.overall}/5, verdict {review.verdict}. "
                         f"{review.summary}\nSuggestions:\n{tips}")
        parts.append("Revise the proposal to answer the review.")
    else:
        parts.append("Search the library and earlier designs as needed, then write your Proposal.")
    return [SystemMessage(render("proposer")), HumanMessage("\n\n".join(parts))]


def check(ctx: ProposalContext, proposal: Proposal) -> str | None:
    """A mutation must name one unit of its parent; the coder can change nothing else."""
    if ctx.mode != "mutation" or not ctx.parents:
        return None
    units = sorted((ctx.parents[0].tree.get("units") or {}))
    if proposal.selected_unit not in units:
        return (f"selected_unit is {proposal.selected_unit!r}; a mutation must select one unit of "
                f"{ctx.parents[0].name}: {', '.join(units)}")
    return None


def propose(model: BaseChatModel, ctx: ProposalContext, **kwargs) -> RoleCall[Proposal]:
    call = ask("proposer", model, Proposal, messages(ctx), check=partial(check, ctx), omit=("recipe",), **kwargs)
    if call.output is not None:
        call.output = call.output.model_copy(
            update={"mode": ctx.mode, "parents": [p.name for p in ctx.parents], "recipe": None})
    return call
