"""The contract between the design graph and a designer (LLM roles or symbolic).

A designer plays the five roles. Each role gets a small context object the graph
builds from its state and the archive, and returns a `RoleCall`: the role's
pydantic output (None when the role failed), the usage of every model call it made
(empty for the symbolic designer), and on failure the reason, which the graph
records on the design. A role never raises for a model's misbehaviour (prose
instead of the schema, a provider error, a timeout): that is a failed RoleCall.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from pydantic import BaseModel, Field

from agents.schemas import Mode, Observation, Plan, Proposal, Review, UnitCode, UnitTask

T = TypeVar("T")

ROLES = ("proposer", "reviewer", "planner", "coder", "observer")


@dataclass
class Usage:
    """One model call: who, which model, tokens and dollars."""

    role: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    dollars: float = 0.0


@dataclass
class RoleCall(Generic[T]):
    output: T | None
    usage: list[Usage] = field(default_factory=list)
    error: str | None = None  # why the role produced nothing (recorded on the design)

    @property
    def ok(self) -> bool:
        return self.output is not None and self.error is None


class ParentBrief(BaseModel):
    """A parent design as roles see it."""

    name: str
    tree: dict = Field(description="the parent's UnitTree JSON (UnitTree.from_dict)")
    view: str = Field(description="UnitTree.view(): the tree as indented text")
    proposal: str = Field(default="", description="the parent's proposal, markdown ('' for seeds)")
    results: str = Field(default="", description="its verification results and fitness, as text")


class ProposalContext(BaseModel):
    mode: Mode
    parents: list[ParentBrief] = Field(default_factory=list)
    siblings: list[str] = Field(default_factory=list, description="proposal titles of earlier children of the parents")
    references: list[str] = Field(default_factory=list, description="library record ids suggested by selection")
    previous: Proposal | None = Field(default=None, description="the proposal sent back by the reviewer")
    reviews: list[Review] = Field(default_factory=list, description="the reviews of `previous`")
    seed: int = 0  # for the symbolic designer's choices; LLM roles ignore it


class ReviewContext(BaseModel):
    proposal: Proposal
    parents: list[ParentBrief] = Field(default_factory=list)
    nearest: list[str] = Field(default_factory=list, description="markdown lines: nearest designs/papers with similarity")
    known_fingerprints: list[str] = Field(default_factory=list, description="fingerprints already in the archive")


class PlanContext(BaseModel):
    proposal: Proposal
    parents: list[ParentBrief] = Field(default_factory=list)


class CoderContext(BaseModel):
    proposal: Proposal
    plan: Plan
    task: UnitTask
    tree: dict = Field(description="the working UnitTree JSON (may hold declared, unimplemented children)")
    view: str
    current_code: str | None = Field(default=None, description="the unit's code in the working tree, if any")
    declaration: dict | None = Field(default=None, description="UnitDecl of the unit when it is a placeholder")
    feedback: list[str] = Field(default_factory=list, description="earlier attempts: check reports and observer notes")
    attempt: int = 1
    protected: list[str] = Field(default_factory=list, description="units the coder must not change")


class ObserverContext(BaseModel):
    proposal: Proposal
    task: UnitTask
    code: UnitCode
    report: str = Field(description="the checker's report, markdown")
    report_ok: bool
    view: str = ""


class Designer(Protocol):
    """What the design graph calls. agents.llm_designer.LLMDesigner and agents.symbolic.SymbolicDesigner."""

    name: str  # "symbolic" or the models used, for records

    def propose(self, ctx: ProposalContext) -> RoleCall[Proposal]: ...

    def review(self, ctx: ReviewContext) -> RoleCall[Review]: ...

    def plan(self, ctx: PlanContext) -> RoleCall[Plan]: ...

    def implement(self, ctx: CoderContext) -> RoleCall[UnitCode]: ...

    def observe(self, ctx: ObserverContext) -> RoleCall[Observation]: ...
