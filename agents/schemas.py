"""What every role returns: pydantic objects, used as the LLMs' structured output.

The LLM roles (agents/proposer.py ... observer.py) and the symbolic designer
(agents/symbolic.py) return the same objects, so the design graph does not care
which one it runs. Ratings are on the paper's 1-5 scale.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Mode = Literal["mutation", "crossover", "scratch"]


class Proposal(BaseModel):
    """A design idea: what changes in the block, why, and how."""

    title: str = Field(description="a short name for the idea, e.g. 'Gated retention with a short conv'")
    mode: Mode
    parents: list[str] = Field(default_factory=list, description="names of the parent designs")
    selected_unit: str | None = Field(
        default=None, description="mutation: the one unit of the parent that changes (its subtree may be rewritten)"
    )
    motivation: str = Field(description="what limits the parent(s) and why this change should help")
    idea: str = Field(description="the mechanism, in a paragraph")
    math: str = Field(default="", description="the equations of the new computation")
    pseudo_code: str = Field(default="", description="pseudo-code of the changed unit(s)")
    expected_effect: str = Field(description="what should improve (loss, recall, speed) and by how much")
    risks: str = Field(default="", description="what could fail: stability, causality, cost")
    references: list[str] = Field(default_factory=list, description="library record ids or arXiv ids relied on")
    # Machine-readable edit written by the symbolic designer (its planner and coder read it
    # back, so a resumed session needs nothing but the checkpointed proposal). LLMs leave it empty.
    recipe: dict | None = None

    def to_markdown(self) -> str:
        parts = [f"# {self.title}", f"mode: {self.mode}; parents: {', '.join(self.parents) or '-'}"]
        if self.selected_unit:
            parts.append(f"unit to change: {self.selected_unit}")
        for label, text in (("Motivation", self.motivation), ("Idea", self.idea), ("Math", self.math),
                            ("Pseudo-code", self.pseudo_code), ("Expected effect", self.expected_effect),
                            ("Risks", self.risks)):
            if text:
                parts.append(f"## {label}\n{text}")
        if self.references:
            parts.append("References: " + ", ".join(self.references))
        return "\n\n".join(parts)


class Ratings(BaseModel):
    novelty: int = Field(ge=1, le=5)
    soundness: int = Field(ge=1, le=5)
    feasibility: int = Field(ge=1, le=5)
    expected_gain: int = Field(ge=1, le=5)


class Review(BaseModel):
    """The reviewer's judgement of a proposal; below the threshold it goes back to the proposer."""

    ratings: Ratings
    overall: float = Field(ge=1, le=5, description="overall rating, 1-5")
    verdict: Literal["accept", "revise", "reject"]
    summary: str = Field(description="the review in a paragraph")
    suggestions: list[str] = Field(default_factory=list, description="concrete changes the proposer should make")
    nearest: list[str] = Field(default_factory=list, description="ids of the closest designs/papers considered")


class UnitTask(BaseModel):
    """One unit the coder must write, in the planner's order."""

    unit: str = Field(description="the unit (GAU class) name")
    action: Literal["new", "modify", "reuse"] = Field(
        description="new: write from scratch; modify: rewrite the parent's unit; reuse: take an existing unit as is"
    )
    source: str | None = Field(default=None, description="reuse/modify: where the code comes from, 'design:Unit'")
    description: str = Field(description="what the unit must compute, its inputs and outputs")
    children: list[str] = Field(default_factory=list, description="children this unit will declare")


class Plan(BaseModel):
    """The order of implementation and what is reused."""

    tasks: list[UnitTask] = Field(description="units to implement, in order (the selected unit first)")
    notes: str = Field(default="", description="anything the coder must keep in mind")


class ChildDecl(BaseModel):
    """A new child unit the coder's code instantiates but does not implement yet."""

    name: str
    requirements: str = Field(description="what the child must compute")
    inputs: list[str] = Field(default_factory=lambda: ["X"])
    outputs: list[str] = Field(default_factory=lambda: ["Y"])


class UnitCode(BaseModel):
    """The coder's implementation of one unit."""

    unit: str = Field(description="the unit implemented; the code defines a GAUBase subclass of this name")
    code: str = Field(description="Python source of the unit: one GAUBase subclass named after the unit, plus helpers")
    new_children: list[ChildDecl] = Field(default_factory=list, description="children declared by this code")
    args: dict = Field(default_factory=dict, description="default hyperparameters of the unit; empty keeps the "
                       "unit's current ones (a rewrite that drops one must accept and ignore it via **kwargs)")
    document: str = Field(default="", description="the unit's documentation (what it computes, shapes)")
    rationale: str = Field(default="", description="how the code follows the proposal, or what changed on a retry")


class Observation(BaseModel):
    """The observer's rating of one implemented unit, given its code and its check report."""

    unit: str
    rating: float = Field(ge=1, le=5, description="1-5; accept at the threshold (default 3)")
    accept: bool
    notes: str = Field(description="what is right or wrong with the code, for the coder's next try")
    suggestions: list[str] = Field(default_factory=list)
