"""The reviewer: ratings, an overall score, a verdict and suggestions for a proposal.

It sees the proposal, the parents, and the nearest earlier designs and papers with
their similarity (novelty), and may search for more before answering.
"""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from agents.base import ReviewContext, RoleCall
from agents.llm import ask
from agents.prompts import parent_markdown, render
from agents.schemas import Review


def messages(ctx: ReviewContext) -> list[BaseMessage]:
    parts = ["## The proposal\n\n" + ctx.proposal.to_markdown()]
    parts += [parent_markdown(p, with_code=False) for p in ctx.parents]
    if ctx.nearest:
        parts.append("## Nearest earlier designs and papers (similarity)\n" + "\n".join(ctx.nearest))
    if ctx.known_fingerprints:
        parts.append(f"The archive already holds {len(ctx.known_fingerprints)} designs.")
    parts.append("Search if you need to, then write your Review.")
    return [SystemMessage(render("reviewer")), HumanMessage("\n\n".join(parts))]


def review(model: BaseChatModel, ctx: ReviewContext, **kwargs) -> RoleCall[Review]:
    return ask("reviewer", model, Review, messages(ctx), **kwargs)
