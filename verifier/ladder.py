"""The ladder of scales: named presets of rungs a design climbs.

A rung fixes how a design is trained and scored there: a target number of
non-embedding parameters (designs are sized to it with `fit_config`), training
tokens, context, batch, learning rate, the evaluation suite, and a budget (how many
designs may be verified at the rung). A design climbs to the next rung only when it
ranks in the top `promote_fraction` of the designs verified at its rung and that rung
still has budget (`promotions`).

Presets:
- `cpu`: `synthetic` (the quick synthetic suite: each task trained on its own, a small
  model, about a minute or two per design), `lm-xs` (about 0.5M parameters on the
  embedded corpus, a few minutes), `lm-s` (about 3M, under 20 minutes), all on 2 cores.
- `gpu`: the paper's 14M, 31M, 70M, 125M and 350M rungs with budgets 256/64/16/4/1
  and tokens = params x 50/40/30/20/20 at context 2048, scored by validation loss (the
  fitness) and on the paper's nine benchmarks through lm-eval (recorded beside it: at
  these scales they sit near chance).
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field, replace

PAPER_BENCHMARKS = ("blimp", "wnli", "rte", "winogrande", "cola", "sst2", "wsc273", "inverse_scaling_mc", "mrpc")


class LadderError(ValueError):
    """An unknown ladder or rung, or a malformed rung."""


@dataclass(frozen=True)
class Rung:
    name: str
    kind: str  # "synthetic": the synthetic suite; "lm": language modeling on a corpus
    target_params: int  # non-embedding parameters
    tokens: int  # training tokens (lm); per task for synthetic (steps = tokens // (batch * context))
    context: int
    batch: int  # global batch, sequences
    lr: float
    eval_suite: tuple[str, ...] = ()  # synthetic task names, or lm-eval tasks on top of validation loss
    eval_limit: int | None = None  # lm-eval examples per task (None: all of them)
    budget: int | None = None  # designs verified at this rung; None: no limit
    promote_fraction: float = 0.5  # top fraction of this rung that may climb to the next
    corpus: str = "stdlib"
    tokenizer: str = "byte"
    micro_batch: int | None = None
    timeout_s: float = 3600.0  # per design, in the sandbox
    repeats_for_noise: int = 3  # training seeds of the baseline used to measure the rung's noise
    notes: str = ""

    @property
    def steps(self) -> int:
        return max(1, self.tokens // (self.batch * self.context))

    def to_dict(self) -> dict:
        data = asdict(self)
        data["eval_suite"] = list(self.eval_suite)
        data["steps"] = self.steps
        return data


# The CPU rung's tasks: the recall and copying skills that separate token mixers at small width,
# at sequence lengths of 32-48 so a design trains on all of them in a few minutes. fuzzy_recall,
# memorization and mqar (T=64; at 0.1M parameters and 500 steps it stays near chance for every
# mixer) are in the suite for longer runs (`verifier.data.synthetic.suite`).
SYNTHETIC_QUICK = ("in_context_recall", "noisy_recall", "selective_copying", "compression")

LADDERS: dict[str, tuple[Rung, ...]] = {
    "cpu": (
        # lr 1e-3 and batch 64 on fresh examples: a 2-block GPT-2 at d_model 64 forms the induction
        # circuit of in-context recall at ~350 steps (accuracy 1.00 by 400); at lr 3e-3, batch 32
        # or on 2,048 repeated examples it stays at ~0.35 after 1,600 steps (measured).
        Rung("synthetic", "synthetic", target_params=100_000, tokens=500 * 64 * 64, context=64, batch=64,
             lr=1e-3, eval_suite=SYNTHETIC_QUICK, budget=None, promote_fraction=0.5, timeout_s=1200,
             notes="each quick synthetic task trained from scratch on its own, on fresh examples; "
                   "score: accuracy on the skill"),
        Rung("lm-xs", "lm", target_params=500_000, tokens=2_000_000, context=256, batch=16, lr=2e-3,
             budget=None, promote_fraction=0.5, timeout_s=1200,
             notes="byte-level language modeling on the Python standard library"),
        Rung("lm-s", "lm", target_params=3_000_000, tokens=2_500_000, context=256, batch=16, lr=1e-3,
             budget=8, promote_fraction=1.0, timeout_s=2400,
             notes="under 20 minutes per design on 2 cores"),
    ),
    "gpu": tuple(
        Rung(f"{p // 1_000_000}M", "lm", target_params=p, tokens=p * mult, context=2048, batch=batch, lr=lr,
             eval_suite=PAPER_BENCHMARKS, budget=budget, promote_fraction=0.25, corpus="fineweb-edu",
             tokenizer="bpe:32768", timeout_s=48 * 3600, repeats_for_noise=2)
        for p, mult, budget, batch, lr in (
            (14_000_000, 50, 256, 64, 1e-3),
            (31_000_000, 40, 64, 64, 8e-4),
            (70_000_000, 30, 16, 128, 6e-4),
            (125_000_000, 20, 4, 128, 6e-4),
            (350_000_000, 20, 1, 256, 3e-4),
        )
    ),
}


def ladder_names() -> list[str]:
    return sorted(LADDERS)


def get_ladder(name: str) -> tuple[Rung, ...]:
    if name not in LADDERS:
        close = difflib.get_close_matches(name, LADDERS, n=2)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        raise LadderError(f"no ladder named {name!r}{hint}; ladders: {', '.join(ladder_names())}")
    return LADDERS[name]


def get_rung(ladder: str, rung: str) -> Rung:
    rungs = get_ladder(ladder)
    for r in rungs:
        if r.name == rung:
            return r
    names = [r.name for r in rungs]
    close = difflib.get_close_matches(rung, names, n=2)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    raise LadderError(f"ladder {ladder!r} has no rung {rung!r}{hint}; rungs: {', '.join(names)}")


def next_rung(ladder: str, rung: str) -> Rung | None:
    rungs = get_ladder(ladder)
    index = [r.name for r in rungs].index(get_rung(ladder, rung).name)
    return rungs[index + 1] if index + 1 < len(rungs) else None


def scaled(rung: Rung, factor: float) -> Rung:
    """The rung with its training tokens scaled (tests and smoke runs use tiny factors)."""
    return replace(rung, tokens=max(rung.batch * rung.context, int(rung.tokens * factor)))


@dataclass
class Standing:
    """A design's result at a rung, for ranking."""

    design: str
    fitness: float
    noise: float = 0.0


@dataclass
class Promotion:
    promoted: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)  # ranked too low
    over_budget: list[str] = field(default_factory=list)  # ranked high enough, but the next rung is full


def promotions(standings: list[Standing], rung: Rung, next_rung_: Rung | None, already_there: int = 0,
               baselines: tuple[str, ...] = ()) -> Promotion:
    """Which designs climb from `rung` to the next one.

    Designs are ranked by fitness; the top `promote_fraction` (at least one) may climb,
    and a design tied with the last promoted one within the noise climbs with it. The
    next rung's budget (minus the designs already there) caps how many go. Baselines
    (the GPT-2 seed and other seeds) are verified at every rung anyway: they are left out.
    """
    result = Promotion()
    if next_rung_ is None:
        result.held = [s.design for s in standings if s.design not in baselines]
        return result
    ranked = sorted((s for s in standings if s.design not in baselines), key=lambda s: -s.fitness)
    if not ranked:
        return result
    quota = max(1, int(round(rung.promote_fraction * len(ranked))))
    cutoff = ranked[quota - 1]
    eligible = [s for s in ranked if s.fitness >= cutoff.fitness - max(s.noise, cutoff.noise)]
    room = None if next_rung_.budget is None else max(0, next_rung_.budget - already_there)
    for s in ranked:
        if s not in eligible:
            result.held.append(s.design)
        elif room is not None and len(result.promoted) >= room:
            result.over_budget.append(s.design)
        else:
            result.promoted.append(s.design)
    return result
