"""LLMDesigner: the five roles on chat models, and `load_designer`, which picks the designer.

The design graph calls a Designer (agents.base); this one runs each role on its
own chat model (agents.llm backends, or fake models in tests). The proposer and
reviewer get the knowledge tools; the planner, coder and observer answer directly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from langchain_core.language_models import BaseChatModel
from langchain_core.tools import BaseTool

from agents import coder, observer, planner, proposer, reviewer
from agents.base import (ROLES, CoderContext, Designer, ObserverContext, PlanContext, ProposalContext,
                         ReviewContext, RoleCall)
from agents.costs import Price, PriceTable
from agents.llm import AgentsConfig, build_models, load_config, model_label
from agents.schemas import Observation, Plan, Proposal, Review, UnitCode

TOOL_ROLES = ("proposer", "reviewer")  # the roles that search before they write


class LLMDesigner:
    """The Designer protocol on one chat model per role."""

    def __init__(self, models: Mapping[str, BaseChatModel], *, tools: Sequence[BaseTool] = (),
                 prices: PriceTable | Mapping[str, Price] | None = None, max_tool_rounds: int = 3,
                 structured_method: str | None = None):
        missing = [r for r in ROLES if r not in models]
        if missing:
            raise ValueError(f"LLMDesigner needs a model for every role; missing: {', '.join(missing)}")
        self.models = {r: models[r] for r in ROLES}
        self.tools = list(tools)
        self.prices = prices if isinstance(prices, PriceTable) else PriceTable(prices)
        self.max_tool_rounds = max_tool_rounds
        self.structured_method = structured_method
        labels = {r: model_label(m) for r, m in self.models.items()}
        self.name = (next(iter(labels.values())) if len(set(labels.values())) == 1
                     else ", ".join(f"{r}={m}" for r, m in labels.items()))

    def _options(self, role: str) -> dict:
        options = {"prices": self.prices, "method": self.structured_method}
        if role in TOOL_ROLES and self.tools:
            options.update(tools=self.tools, max_tool_rounds=self.max_tool_rounds)
        return options

    def propose(self, ctx: ProposalContext) -> RoleCall[Proposal]:
        return proposer.propose(self.models["proposer"], ctx, **self._options("proposer"))

    def review(self, ctx: ReviewContext) -> RoleCall[Review]:
        return reviewer.review(self.models["reviewer"], ctx, **self._options("reviewer"))

    def plan(self, ctx: PlanContext) -> RoleCall[Plan]:
        return planner.plan(self.models["planner"], ctx, **self._options("planner"))

    def implement(self, ctx: CoderContext) -> RoleCall[UnitCode]:
        return coder.implement(self.models["coder"], ctx, **self._options("coder"))

    def observe(self, ctx: ObserverContext) -> RoleCall[Observation]:
        return observer.observe(self.models["observer"], ctx, **self._options("observer"))


def load_designer(config: AgentsConfig | None = None, *, tools: Sequence[BaseTool] = (),
                  env: Mapping[str, str] | None = None) -> Designer:
    """The symbolic designer when no LLM is configured, else an LLMDesigner on the configured models.

    Raises agents.llm.AgentsConfigError (one clear message) when a backend cannot start,
    e.g. a missing API key.
    """
    config = config if config is not None else load_config(env=env)
    if not config.enabled:
        from agents.symbolic import SymbolicDesigner

        return SymbolicDesigner()
    return LLMDesigner(build_models(config, env), tools=tools, prices=config.price_table(),
                       max_tool_rounds=config.max_tool_rounds, structured_method=config.structured_method)
