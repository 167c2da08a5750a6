"""What the agents spend: a price table, a ledger, and budgets.

Every model call a role makes is a `Usage` (agents.base): tokens in and out and
the dollars they cost at the price table's rate. The ledger sums usages per role,
per design and per run; a `Budget` says when a design session or the whole run
must stop spending. The design graph records the usages on each design and calls
`Budget.over_budget` between steps; this module never stops anything itself.

Prices are US dollars per million tokens, as the providers publish them (list
prices, mid 2025; check your provider's page and override in the config, since
they change). Local models (ollama, an OpenAI-compatible server at a base_url) and
models not in the table cost 0, with a note saying so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field

from agents.base import Usage


@dataclass(frozen=True)
class Price:
    """Dollars per million tokens: `input` for the prompt, `output` for the completion."""

    input: float
    output: float

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input + completion_tokens * self.output) / 1_000_000


FREE = Price(0.0, 0.0)

# Keys are "provider:model"; dated snapshots ("gpt-4.1-2025-04-14") match by prefix.
DEFAULT_PRICES: dict[str, Price] = {
    "openai:gpt-4.1": Price(2.00, 8.00),
    "openai:gpt-4.1-mini": Price(0.40, 1.60),
    "openai:gpt-4.1-nano": Price(0.10, 0.40),
    "openai:gpt-4o": Price(2.50, 10.00),
    "openai:gpt-4o-mini": Price(0.15, 0.60),
    "openai:o3": Price(2.00, 8.00),
    "openai:o4-mini": Price(1.10, 4.40),
    "openai:gpt-5": Price(1.25, 10.00),
    "openai:gpt-5-mini": Price(0.25, 2.00),
    "anthropic:claude-opus-4-1": Price(15.00, 75.00),
    "anthropic:claude-sonnet-4-5": Price(3.00, 15.00),
    "anthropic:claude-sonnet-4": Price(3.00, 15.00),
    "anthropic:claude-haiku-4-5": Price(1.00, 5.00),
    "anthropic:claude-3-5-haiku": Price(0.80, 4.00),
}

# Providers whose models run on the user's own machine or server: never billed.
LOCAL_PROVIDERS = ("ollama", "openai-compatible", "fake")


class PriceTable:
    """Looks up the price of a "provider:model" label; unknown and local models cost 0."""

    def __init__(self, prices: Mapping[str, Price | Mapping | tuple] | None = None, *, defaults: bool = True):
        self.prices: dict[str, Price] = dict(DEFAULT_PRICES) if defaults else {}
        for model, price in (prices or {}).items():
            self.prices[model] = _as_price(model, price)

    def lookup(self, model: str) -> tuple[Price, str]:
        """The price of a model and a note on where it came from ('' for a table entry)."""
        if model in self.prices:
            return self.prices[model], ""
        provider = model.split(":", 1)[0]
        matches = [key for key in self.prices if model.startswith(key + "-")]
        if matches and provider not in LOCAL_PROVIDERS:
            return self.prices[max(matches, key=len)], ""
        if provider in LOCAL_PROVIDERS:
            return FREE, f"{model}: a local model, counted at $0"
        return FREE, f"{model}: no price in the table, counted at $0 (add it to the config's [prices])"

    def usage(self, role: str, model: str, prompt_tokens: int, completion_tokens: int) -> Usage:
        price, _ = self.lookup(model)
        return Usage(role, model, prompt_tokens, completion_tokens, price.cost(prompt_tokens, completion_tokens))


def _as_price(model: str, price) -> Price:
    """A Price from a Price, a (input, output) pair or a {'input': .., 'output': ..} table."""
    if isinstance(price, Price):
        return price
    try:
        if isinstance(price, Mapping):
            return Price(float(price["input"]), float(price["output"]))
        inp, out = price
        return Price(float(inp), float(out))
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"price for {model!r} must be {{input = $/1M, output = $/1M}}, got {price!r}") from None


# ---------------------------------------------------------------- the ledger


@dataclass
class Totals:
    """Summed usage: model calls, tokens in and out, dollars."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    dollars: float = 0.0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, usage: Usage) -> None:
        self.calls += 1
        self.prompt_tokens += usage.prompt_tokens
        self.completion_tokens += usage.completion_tokens
        self.dollars += usage.dollars

    def __str__(self) -> str:
        return f"{self.calls} calls, {self.prompt_tokens} in / {self.completion_tokens} out tokens, ${self.dollars:.4f}"


def total(usages: Iterable[Usage]) -> Totals:
    out = Totals()
    for usage in usages:
        out.add(usage)
    return out


@dataclass
class Ledger:
    """Every model call of a run, tagged with its design: sums per role, per design, per run."""

    entries: list[tuple[str, Usage]] = field(default_factory=list)

    def add(self, design: str, usages: Iterable[Usage]) -> None:
        self.entries.extend((design, u) for u in usages)

    def run(self) -> Totals:
        return total(u for _, u in self.entries)

    def design(self, design: str) -> Totals:
        return total(u for d, u in self.entries if d == design)

    def by_role(self, design: str | None = None) -> dict[str, Totals]:
        out: dict[str, Totals] = {}
        for d, u in self.entries:
            if design is None or d == design:
                out.setdefault(u.role, Totals()).add(u)
        return out

    def by_design(self) -> dict[str, Totals]:
        out: dict[str, Totals] = {}
        for d, u in self.entries:
            out.setdefault(d, Totals()).add(u)
        return out

    def to_list(self) -> list[dict]:
        """Plain rows for the archive or a checkpoint."""
        return [{"design": d, **asdict(u)} for d, u in self.entries]

    @classmethod
    def from_list(cls, rows: Iterable[Mapping]) -> "Ledger":
        ledger = cls()
        for row in rows:
            row = dict(row)
            ledger.entries.append((row.pop("design"), Usage(**row)))
        return ledger


# ---------------------------------------------------------------- budgets


@dataclass
class Budget:
    """Hard spending limits, in dollars and in tokens (in + out); None means no limit.

    Token limits matter for local models, which cost $0 but still take time.
    """

    per_design: float | None = None
    per_run: float | None = None
    per_design_tokens: int | None = None
    per_run_tokens: int | None = None

    def over_budget(self, design: Totals | float = 0.0, run: Totals | float | None = None) -> str | None:
        """Why spending must stop, or None. `design`: this session so far; `run`: the whole run so far.

        Plain numbers are dollars; pass Totals for the token limits to apply. A limit is
        reached when spending equals or exceeds it, so a session stops at the first step
        that crosses the line rather than one step later.
        """
        design = design if isinstance(design, Totals) else Totals(dollars=float(design))
        run = design if run is None else (run if isinstance(run, Totals) else Totals(dollars=float(run)))
        for scope, spent, dollars, tokens in (("design", design, self.per_design, self.per_design_tokens),
                                              ("run", run, self.per_run, self.per_run_tokens)):
            if dollars is not None and spent.dollars >= dollars:
                return f"{scope} budget reached: ${spent.dollars:.4f} spent of ${dollars:.4f} per {scope}"
            if tokens is not None and spent.tokens >= tokens:
                return f"{scope} token budget reached: {spent.tokens} tokens used of {tokens} per {scope}"
        return None
