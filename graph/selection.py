"""Selection: which designs the next design session starts from, and what it reads.

Every turn of the evolution loop asks a strategy for a `Selection`: a mode
(mutation, crossover or scratch), the parent designs, library records and archive
designs to show the proposer as references. Strategies share one interface,
`SelectionStrategy.select(view, rng)`, over a small read-only `ArchiveView` (built
from the archive by `view_from_archive`), so they can be swapped and tested without
training anything.

The default, `PaperSelection`, follows the Genesys paper:

- the mode is drawn by probability (mutation 0.80, crossover 0.15, scratch 0.05);
  crossover only once enough verified designs exist, its mass then going to the
  other modes in proportion;
- parents come from quadrants of fitness rank x confidence: *exploit* a good design
  whose standing is backed by evidence, *explore* a poor but well-measured one (a
  known weakness is a direction), or now and then *restart* from a seed;
- ranks come from `verifier.fitness.rank`, so designs whose fitness differs by less
  than the noise share a rank and are sampled alike.

`MapElitesSelection` is a quality-diversity alternative: the archive is a map of
cells (family x FLOPs-per-parameter bin), each holding its best design, and parents
are elites of cells drawn uniformly, so every niche keeps being explored.

`is_novel` is the filter a design passes before compute is spent on it: its
fingerprint must be new and, given a nearest-design function, it must not be too
close to a design already in the archive.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from designs.tree import UnitTree
from verifier.fitness import TIE_Z, compare, mean_fitness, rank
from verifier.ladder import get_ladder

MODES = ("mutation", "crossover", "scratch")
TACTICS = ("exploit", "explore", "restart")
# Designs that cannot be parents: they never ran, or failed.
NOT_CANDIDATES = ("proposed", "failed", "rejected")
BASELINE = "gpt2"


class SelectionError(ValueError):
    """No selection is possible (an empty archive, a bad configuration); the message says why."""


# ---------------------------------------------------------------------------
# The read-only view of the archive


@dataclass(frozen=True)
class Candidate:
    """One design as selection sees it."""

    name: str
    fingerprint: str
    family: str | None = None  # the seed its lineage starts from (or the archive's family)
    fitness: float | None = None  # at its highest rung, relative to GPT-2; None: not verified yet
    sigma: float = 0.0  # noise (standard deviation) of `fitness`
    rung: int = -1  # index in the ladder of the highest rung with a fitness; -1: none
    repeats: int = 0  # verifications (training seeds) behind `fitness`
    is_seed: bool = False
    flops_per_param: float | None = None  # training FLOPs per token per non-embedding parameter

    @property
    def verified(self) -> bool:
        return self.fitness is not None and math.isfinite(self.fitness)


@dataclass(frozen=True)
class ArchiveView:
    """What selection reads: the candidate parents and every fingerprint already seen."""

    candidates: tuple[Candidate, ...] = ()
    # fingerprint -> names of the designs with it (failed ones too: the same code fails again)
    fingerprints: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        known = dict(self.fingerprints)
        for c in self.candidates:
            if c.name not in known.get(c.fingerprint, ()):
                known[c.fingerprint] = (*known.get(c.fingerprint, ()), c.name)
        object.__setattr__(self, "fingerprints", known)

    @property
    def verified(self) -> list[Candidate]:
        return [c for c in self.candidates if c.verified]

    @property
    def seeds(self) -> list[Candidate]:
        return [c for c in self.candidates if c.is_seed]

    def find_by_fingerprint(self, fingerprint: str) -> list[str]:
        return list(self.fingerprints.get(fingerprint, ()))


def _metric_view(kind: str, metrics: dict) -> dict | None:
    """The metrics `rung_score` reads, or None when the run produced no usable score."""
    accuracy = metrics.get("accuracy") or {}
    if kind == "synthetic":
        return {"accuracy": accuracy} if accuracy else None
    bpb = metrics.get("bpb")
    if bpb is None or not math.isfinite(bpb):
        return None
    return {"bpb": bpb, **({"accuracy": accuracy} if accuracy else {})}


def _family(record, by_name: dict) -> str | None:
    """The archive's family, else the seed at the root of the first-parent lineage."""
    seen = set()
    while record is not None and record.name not in seen:
        if record.family:
            return record.family
        if record.mode == "seed" or not record.parents:
            return record.name
        seen.add(record.name)
        record = by_name.get(record.parents[0])
    return None


def view_from_archive(archive, ladder: str, baseline: str = BASELINE) -> ArchiveView:
    """Build the view of `archive` for a run on `ladder` (verification rungs are "LADDER/RUNG").

    Each candidate's fitness is its mean `rung_score` at the highest rung where both it
    and the baseline have usable runs; its noise combines the baseline's spread with
    the design's own runs (the design's share shrinks as 1/repeats).
    """
    rungs = get_ladder(ladder)
    records = archive.list_designs()
    by_name = {r.name: r for r in records}
    runs: dict[tuple[str, int], list[dict]] = {}
    flops: dict[str, float] = {}
    for v in archive.verifications():
        index = next((i for i, r in enumerate(rungs) if v.rung == f"{ladder}/{r.name}"), None)
        if index is None:
            continue
        metrics = _metric_view(rungs[index].kind, v.metrics)
        if metrics is not None:
            runs.setdefault((v.design, index), []).append(metrics)
        if v.metrics.get("flops_per_token") and v.metrics.get("params"):
            flops[v.design] = v.metrics["flops_per_token"] / v.metrics["params"]
    candidates = []
    for record in records:
        if record.status in NOT_CANDIDATES:
            continue
        score = _highest_score(record.name, rungs, runs, baseline)
        candidates.append(Candidate(
            name=record.name, fingerprint=record.fingerprint, family=_family(record, by_name),
            is_seed=record.mode == "seed", flops_per_param=flops.get(record.name), **score))
    fingerprints: dict[str, tuple[str, ...]] = {}
    for record in records:
        fingerprints[record.fingerprint] = (*fingerprints.get(record.fingerprint, ()), record.name)
    return ArchiveView(tuple(candidates), fingerprints)


def _highest_score(name: str, rungs, runs: dict, baseline: str) -> dict:
    for index in range(len(rungs) - 1, -1, -1):
        mine, base = runs.get((name, index)), runs.get((baseline, index))
        if not mine or not base:
            continue
        rung = rungs[index]
        mean = mean_fitness(rung.name, rung.kind, mine, base)
        return {"fitness": mean.fitness, "sigma": mean.sigma, "rung": index, "repeats": mean.repeats}
    return {}


# ---------------------------------------------------------------------------
# Rank x confidence


def confidence(c: Candidate, noise_scale: float) -> float:
    """How much evidence backs a design's standing, in rungs.

    Each rung reached counts one (reaching a rung means winning a promotion at the
    one below). Within a rung, up to one more for precision: repeats / (repeats +
    (sigma / noise_scale)^2), which grows with repeated runs and falls with noise,
    but never outweighs a rung.
    """
    if not c.verified:
        return 0.0
    relative = (c.sigma / noise_scale) ** 2 if noise_scale > 0 else 0.0
    repeats = max(1, c.repeats)
    return c.rung + 1 + repeats / (repeats + relative)


@dataclass(frozen=True)
class Standing:
    candidate: Candidate
    rank: int  # 1 = best; designs tied within the noise share a rank
    confidence: float
    good: bool  # in the better half by rank (ties with the half's last design included)
    confident: bool  # at or above the median confidence


def standings(view: ArchiveView, z: float = TIE_Z) -> list[Standing]:
    """Verified candidates with rank and confidence, best first, split into quadrants."""
    verified = view.verified
    if not verified:
        return []
    by_name = {c.name: c for c in verified}
    ranked = rank({c.name: (c.fitness, c.sigma) for c in verified}, z)
    noise_scale = statistics.median(c.sigma for c in verified)
    conf = {c.name: confidence(c, noise_scale) for c in verified}
    median_conf = statistics.median(conf.values())
    cutoff = ranked[math.ceil(len(ranked) / 2) - 1][1]  # rank of the last design in the better half
    return [Standing(by_name[name], r, conf[name], good=r <= cutoff, confident=conf[name] >= median_conf)
            for name, r, _fitness, _noise in ranked]


# ---------------------------------------------------------------------------
# Configuration and result


@dataclass(frozen=True)
class SelectionConfig:
    """The knobs of selection; the defaults are the paper's."""

    mode_probs: Mapping[str, float] = field(
        default_factory=lambda: {"mutation": 0.80, "crossover": 0.15, "scratch": 0.05})
    tactic_probs: Mapping[str, float] = field(
        default_factory=lambda: {"exploit": 0.65, "explore": 0.25, "restart": 0.10})
    crossover_min_designs: int = 4  # verified designs (seeds included) before crossover is allowed
    crossover_parents: int = 2
    library_references: int = 3  # library records suggested to the proposer
    design_references: int = 2  # archive designs (not parents) shown as examples
    tie_z: float = TIE_Z

    def __post_init__(self) -> None:
        _check_probs("mode_probs", self.mode_probs, MODES)
        _check_probs("tactic_probs", self.tactic_probs, TACTICS)
        if self.crossover_parents < 2:
            raise SelectionError(f"crossover needs at least 2 parents, not {self.crossover_parents}")
        if self.crossover_min_designs < self.crossover_parents:
            raise SelectionError(f"crossover_min_designs ({self.crossover_min_designs}) must be at least "
                                 f"crossover_parents ({self.crossover_parents})")
        if self.library_references < 0 or self.design_references < 0:
            raise SelectionError("reference counts must be >= 0")


def _check_probs(what: str, probs: Mapping[str, float], names: tuple[str, ...]) -> None:
    unknown = set(probs) - set(names)
    if unknown:
        raise SelectionError(f"{what}: unknown {', '.join(sorted(unknown))}; known: {', '.join(names)}")
    if any(not math.isfinite(p) or p < 0 for p in probs.values()):
        raise SelectionError(f"{what}: probabilities must be finite and >= 0, got {dict(probs)}")
    if abs(sum(probs.values()) - 1.0) > 1e-6:
        raise SelectionError(f"{what}: probabilities must sum to 1, got {sum(probs.values()):.6f}")


@dataclass(frozen=True)
class Selection:
    """What a design session starts from. Names and ids only: it goes into graph state."""

    mode: str
    parents: tuple[str, ...] = ()
    references: tuple[str, ...] = ()  # library record ids
    reference_designs: tuple[str, ...] = ()  # archive designs shown as examples
    reason: str = ""  # which tactic or cell chose the parents, for events and reports

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


class SelectionStrategy(Protocol):
    """The interface every selection strategy offers."""

    name: str

    def select(self, view: ArchiveView, rng: random.Random) -> Selection: ...


# ---------------------------------------------------------------------------
# Shared pieces


def _draw(probs: Mapping[str, float], rng: random.Random) -> str:
    names = [n for n, p in probs.items() if p > 0]
    return rng.choices(names, weights=[probs[n] for n in names])[0]


def _sample(items: Sequence, weights: Sequence[float], k: int, rng: random.Random) -> list:
    """k distinct items, drawn one by one with the given weights (fewer if there are fewer)."""
    pool, w, out = list(items), list(weights), []
    while pool and len(out) < k:
        i = rng.choices(range(len(pool)), weights=w)[0]
        out.append(pool.pop(i))
        w.pop(i)
    return out


def _load_library() -> Mapping[str, Any]:
    from knowledge.library import load_library

    return load_library()


class _References:
    """Library records and archive designs for the proposer to read.

    Half the library picks (rounded up) are records linked to the parents' families
    (the papers their seeds follow), the rest are drawn from the whole library for
    fresh ideas; archive designs are drawn by rank among the verified non-parents.
    """

    def __init__(self, library: Mapping[str, Any] | None, config: SelectionConfig):
        self._library = library
        self.config = config

    @property
    def library(self) -> Mapping[str, Any]:
        if self._library is None:
            self._library = _load_library()
        return self._library

    def pick(self, view: ArchiveView, ranked: list[Standing], parents: Sequence[str],
             rng: random.Random) -> tuple[tuple[str, ...], tuple[str, ...]]:
        k = self.config.library_references
        ids = sorted(self.library) if k else []
        families = {c.family for c in view.candidates if c.name in parents and c.family}
        related = [i for i in ids if families & set(getattr(self.library[i], "seeds", ()) or ())]
        chosen = _sample(related, [1.0] * len(related), math.ceil(k / 2) if parents else 0, rng)
        rest = [i for i in ids if i not in chosen]
        chosen += _sample(rest, [1.0] * len(rest), k - len(chosen), rng)
        others = [s for s in ranked if s.candidate.name not in parents]
        designs = _sample([s.candidate.name for s in others], [1.0 / s.rank for s in others],
                          self.config.design_references, rng)
        return tuple(chosen), tuple(designs)


def mode_probabilities(config: SelectionConfig, view: ArchiveView, crossover_ready: bool) -> dict[str, float]:
    """The configured mode probabilities, renormalized over the modes possible now."""
    probs = dict.fromkeys(MODES, 0.0) | dict(config.mode_probs)
    if not crossover_ready:
        probs["crossover"] = 0.0
    if not view.candidates:
        probs["mutation"] = probs["crossover"] = 0.0
    total = sum(probs.values())
    if total <= 0:
        raise SelectionError("no mode is possible: the archive holds no design to mutate and scratch has "
                             "probability 0")
    return {m: p / total for m, p in probs.items()}


# ---------------------------------------------------------------------------
# The paper's strategy


class PaperSelection:
    """Mode by probability; parents from quadrants of rank x confidence (see the module doc)."""

    name = "paper"

    def __init__(self, config: SelectionConfig | None = None, library: Mapping[str, Any] | None = None):
        self.config = config or SelectionConfig()
        self.references = _References(library, self.config)

    def crossover_ready(self, view: ArchiveView) -> bool:
        return len(view.verified) >= self.config.crossover_min_designs

    def select(self, view: ArchiveView, rng: random.Random) -> Selection:
        ranked = standings(view, self.config.tie_z)
        mode = _draw(mode_probabilities(self.config, view, self.crossover_ready(view)), rng)
        if mode == "mutation":
            parent, reason = self.mutation_parent(view, ranked, rng)
            parents = (parent,)
        elif mode == "crossover":
            parents, reason = self.crossover_parents(ranked, rng), "crossover of good designs"
        else:
            parents, reason = (), "scratch"
        refs, designs = self.references.pick(view, ranked, parents, rng)
        return Selection(mode, parents, refs, designs, reason)

    def mutation_parent(self, view: ArchiveView, ranked: list[Standing], rng: random.Random) -> tuple[str, str]:
        """One parent by the tactic drawn; an empty quadrant falls back to the next pool in line."""
        tactic = _draw(self.config.tactic_probs, rng)
        for label, pool in self._pools(tactic, view, ranked):
            if pool:
                names = [c.name for c, _ in pool]
                weights = [w for _, w in pool]
                return rng.choices(names, weights=weights)[0], f"{tactic}: {label}"
        raise SelectionError("the archive holds no design to mutate")

    def _pools(self, tactic: str, view: ArchiveView, ranked: list[Standing]):
        """(label, [(candidate, weight)]) in the order a tactic tries them."""
        by_rank = lambda keep: [(s.candidate, 1.0 / s.rank) for s in ranked if keep(s)]  # noqa: E731
        uniform = lambda keep: [(s.candidate, 1.0) for s in ranked if keep(s)]  # noqa: E731
        seeds = ("seed", [(c, 1.0) for c in view.seeds])
        anything = ("any design", [(c, 1.0) for c in view.candidates])
        if tactic == "exploit":
            return [("good and confident", by_rank(lambda s: s.good and s.confident)),
                    ("good", by_rank(lambda s: s.good)), ("verified", by_rank(lambda s: True)), seeds, anything]
        if tactic == "explore":
            return [("poor and confident", uniform(lambda s: not s.good and s.confident)),
                    ("poor", uniform(lambda s: not s.good)), ("verified", uniform(lambda s: True)), seeds,
                    anything]
        return [seeds, ("verified", uniform(lambda s: True)), anything]

    def crossover_parents(self, ranked: list[Standing], rng: random.Random) -> tuple[str, ...]:
        """Distinct parents drawn by rank from the good half, topped up from the rest."""
        n = self.config.crossover_parents
        good = [s for s in ranked if s.good]
        parents = _sample([s.candidate.name for s in good], [1.0 / s.rank for s in good], n, rng)
        rest = [s for s in ranked if s.candidate.name not in parents]
        parents += _sample([s.candidate.name for s in rest], [1.0 / s.rank for s in rest], n - len(parents), rng)
        return tuple(parents)


# ---------------------------------------------------------------------------
# Quality diversity: MAP-Elites over (family, FLOPs bin)


def flops_bin(c: Candidate, bins_per_octave: int = 2) -> int | None:
    """The cost niche of a design: log2 of its FLOPs per parameter, in 1/bins_per_octave steps."""
    if not c.flops_per_param or c.flops_per_param <= 0:
        return None
    return math.floor(math.log2(c.flops_per_param) * bins_per_octave)


class MapElitesSelection:
    """Quality diversity: one elite per (family, FLOPs bin) cell; parents are elites of random cells.

    Cells are drawn uniformly, so a niche with a weak best design is explored as often
    as the leading one. Within a cell, designs tied with the best within the noise are
    equal: the most confident of them is the elite.
    """

    name = "map-elites"

    def __init__(self, config: SelectionConfig | None = None, library: Mapping[str, Any] | None = None,
                 bins_per_octave: int = 2):
        self.config = config or SelectionConfig()
        self.references = _References(library, self.config)
        self.bins_per_octave = bins_per_octave

    def cells(self, view: ArchiveView) -> dict[tuple[str | None, int | None], Candidate]:
        """The elite of every occupied cell."""
        ranked = standings(view, self.config.tie_z)
        members: dict[tuple, list[Standing]] = {}
        for s in ranked:
            members.setdefault((s.candidate.family, flops_bin(s.candidate, self.bins_per_octave)), []).append(s)
        elites = {}
        for cell, group in members.items():
            best = group[0].candidate  # standings are best first
            tied = [s for s in group if compare((s.candidate.fitness, s.candidate.sigma),
                                                (best.fitness, best.sigma), self.config.tie_z) == 0]
            elites[cell] = max(tied, key=lambda s: (s.confidence, s.candidate.name)).candidate
        return elites

    def select(self, view: ArchiveView, rng: random.Random) -> Selection:
        elites = self.cells(view)
        ready = len(elites) >= 2 and len(view.verified) >= self.config.crossover_min_designs
        mode = _draw(mode_probabilities(self.config, view, ready), rng)
        cells = sorted(elites, key=str)
        if mode == "scratch":
            parents, reason = (), "scratch"
        elif not cells:  # nothing verified yet: start from a seed
            pool = view.seeds or list(view.candidates)
            parents, reason = (rng.choice(pool).name,), "restart: no cell occupied yet"
        elif mode == "mutation":
            cell = rng.choice(cells)
            parents, reason = (elites[cell].name,), f"elite of cell {cell}"
        else:
            chosen = _sample(cells, [1.0] * len(cells), self.config.crossover_parents, rng)
            parents, reason = tuple(elites[c].name for c in chosen), f"elites of cells {chosen}"
        refs, designs = self.references.pick(view, standings(view, self.config.tie_z), parents, rng)
        return Selection(mode, parents, refs, designs, reason)


STRATEGIES: dict[str, Callable[..., SelectionStrategy]] = {
    PaperSelection.name: PaperSelection,
    MapElitesSelection.name: MapElitesSelection,
}


def get_strategy(name: str = "paper", config: SelectionConfig | None = None,
                 library: Mapping[str, Any] | None = None) -> SelectionStrategy:
    if name not in STRATEGIES:
        raise SelectionError(f"no selection strategy {name!r}; strategies: {', '.join(STRATEGIES)}")
    return STRATEGIES[name](config=config, library=library)


# ---------------------------------------------------------------------------
# Novelty


# nearest(tree) -> [(design name, similarity in [0, 1])], most similar first
NearestFn = Callable[[UnitTree], Iterable[tuple[str, float]]]


@dataclass(frozen=True)
class Novelty:
    """The novelty filter's verdict; true when the design is new enough to spend compute on."""

    novel: bool
    reason: str
    duplicate_of: tuple[str, ...] = ()
    nearest: tuple[tuple[str, float], ...] = ()

    def __bool__(self) -> bool:
        return self.novel


def is_novel(design: UnitTree | str, archive, nearest: NearestFn | None = None, *, name: str | None = None,
             threshold: float = 0.95) -> Novelty:
    """Whether a design (a tree or its fingerprint) is new to `archive`.

    `archive` is an `ArchiveView` or a `designs.archive.Archive` (anything with
    `find_by_fingerprint`). A fingerprint already there under another name is a
    duplicate; `name` (default: the tree's name) is the design's own, so a design
    already recorded is not its own duplicate. With `nearest` (say, the knowledge
    store's nearest-design search) and a tree, a design whose most similar neighbour
    reaches `threshold` is too close. Errors raised by `nearest` propagate: the caller
    decides whether to go on without it.
    """
    tree = design if isinstance(design, UnitTree) else None
    if tree is None and not isinstance(design, str):
        raise TypeError(f"is_novel takes a UnitTree or a fingerprint string, not {type(design).__name__}")
    fingerprint = tree.fingerprint() if tree is not None else design
    own = name or (tree.name if tree is not None else None)
    found = archive.find_by_fingerprint(fingerprint)
    dups = tuple(n for n in (getattr(r, "name", r) for r in found) if n != own)
    if dups:
        return Novelty(False, f"same code as {', '.join(dups)} (fingerprint {fingerprint[:12]})", dups)
    if nearest is None or tree is None:
        return Novelty(True, "new fingerprint")
    neighbours = tuple((str(n), float(s)) for n, s in nearest(tree) if n != own)
    close = [(n, s) for n, s in neighbours if s >= threshold]
    if close:
        name, sim = max(close, key=lambda pair: pair[1])
        return Novelty(False, f"too close to {name} (similarity {sim:.3f} >= {threshold})", nearest=neighbours)
    return Novelty(True, "new fingerprint, no design within the similarity threshold", nearest=neighbours)
