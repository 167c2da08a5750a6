"""The settings of one design session, in one pydantic model.

They come from the run config (the `[design]` table a run's config file holds),
from `configurable` keys of the LangGraph runnable config (Studio's config panel,
the CLI's flags), or their defaults, which are the paper's. Only JSON-friendly
values live here: the designer itself is passed separately (see graph.design).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from verifier.checker import CheckOptions
from verifier.sandbox import Limits


# The paper's ablations of the design workflow, as DesignConfig settings.
ABLATIONS: dict[str, dict[str, Any]] = {
    "full": {},
    "direct": {"direct": True},
    "no-planner": {"use_planner": False},
    "no-observer": {"use_observer": False},
}


class CheckSettings(BaseModel):
    """What the checker does to each unit (see verifier.checker.CheckOptions)."""

    efficiency: bool = Field(True, description="compare time, memory and FLOPs with the GPT-2 seed")
    train_steps: int = Field(40, ge=1, description="steps of the short training run (the loss must fall)")
    target_params: int | None = Field(None, description="non-embedding parameters the design must size to")
    timeout_s: float = Field(240.0, gt=0, description="sandbox wall-clock limit per check")
    memory_mb: int = Field(8192, gt=0, description="sandbox memory limit per check")
    extra: dict[str, Any] = Field(default_factory=dict, description="other verifier.functional.DEFAULTS keys")

    def options(self) -> CheckOptions:
        return CheckOptions(target_params=self.target_params, efficiency=self.efficiency,
                            train_steps=self.train_steps, extra=dict(self.extra),
                            limits=Limits(timeout_s=self.timeout_s, memory_mb=self.memory_mb))


class DesignConfig(BaseModel):
    """How one design session runs: review, unit-by-unit tries, beam, checks, budgets."""

    review_threshold: float = Field(4.0, ge=1, le=5, description="overall rating a proposal needs")
    max_review_rounds: int = Field(3, ge=1, description="proposals the reviewer sees before the session is rejected")
    max_unit_tries: int = Field(5, ge=1, description="K: tries per unit before the session fails")
    beam: int = Field(1, ge=1, description="candidate implementations per try; the best is kept")
    observer_accept: float = Field(3.0, ge=1, le=5, description="observer rating at which a unit is accepted")
    check: CheckSettings = Field(default_factory=CheckSettings)
    budget_dollars: float | None = Field(None, gt=0, description="hard limit on dollars per design session")
    budget_tokens: int | None = Field(None, gt=0, description="hard limit on tokens (in + out) per design session")
    run_budget_dollars: float | None = Field(None, gt=0, description="hard limit on dollars for the whole run")
    interactive: bool = Field(False, description="pause after the review for a human to approve, edit or reject")
    knowledge: Literal["auto", "on", "off"] = Field(
        "auto", description="knowledge engine (tools, nearest designs, indexing of finished designs): auto uses it "
        "with LLM designers and wherever the run directory already has a store; on always; off never")
    # The paper's ablations (graph/benchmark.py compares them); the defaults are the full workflow.
    direct: bool = Field(False, description="ablation: one coder call writes the whole block as one unit, "
                         "checked and retried as a whole (no unit-by-unit implementation)")
    use_planner: bool = Field(True, description="false is an ablation: no planner; the coder's tasks come from "
                              "the proposal alone (the unit it names, then the children the coder declares)")
    use_observer: bool = Field(True, description="false is an ablation: no observer; the checker alone accepts "
                               "a unit")

    @property
    def ablation(self) -> str:
        """The ablation these settings run, by its name in ABLATIONS ('full' for the paper's workflow)."""
        on = [name for name, flags in ABLATIONS.items()
              if flags and all(getattr(self, k) == v for k, v in flags.items())]
        return "+".join(on) or "full"

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> "DesignConfig":
        """Settings from a run config's [design] table; unknown keys are an error naming them."""
        values = dict(values or {})
        unknown = sorted(set(values) - set(cls.model_fields))
        if unknown:
            raise ValueError(f"unknown design settings {unknown}; known: {sorted(cls.model_fields)}")
        try:
            return cls.model_validate(values)
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
            raise ValueError(f"bad design settings: {problems}") from None

    @classmethod
    def from_runnable_config(cls, config: Mapping[str, Any] | None) -> "DesignConfig":
        """Settings from a LangGraph runnable config: `configurable["design"]` (a dict or a
        DesignConfig) overlaid with any top-level `configurable` key of the same name."""
        configurable = dict((config or {}).get("configurable") or {})
        base = configurable.get("design") or {}
        if isinstance(base, DesignConfig):
            base = base.model_dump()
        overrides = {k: v for k, v in configurable.items() if k in cls.model_fields}
        return cls.from_mapping({**base, **overrides})
