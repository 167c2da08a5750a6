"""What a run found: the leaderboard, one design in full, and a self-contained HTML report.

    rows = leaderboard(archive, "cpu")            # verified designs, best first, ties shared
    text = show_design(archive, "g0003a-mutation") # markdown: proposal, reviews, tree, diff, results
    path = write_report(run_dir, "cpu")            # RUN_DIR/report.html, inline SVG plots, no scripts

Fitness is always relative to the GPT-2 seed trained under the same rung
(verifier.fitness): a design's leaderboard fitness is its mean fitness at the
highest rung it reached, with its noise, exactly as selection sees it
(graph.selection.view_from_archive); designs whose fitness differs by less than
the noise share a rank (verifier.fitness.rank).

The plots are drawn here as SVG text by a few small functions (no plotting
library, no JavaScript), so the report opens anywhere, offline, as one file.
"""

from __future__ import annotations

import difflib
import html
import json
import math
import statistics
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from rich.table import Table

from designs.archive import Archive, VerificationRecord
from designs.artifacts import MissingArtifact
from designs.catalog import open_archive, recorded_archive_url, resolve
from designs.tree import TreeError, UnitTree
from graph.selection import BASELINE, view_from_archive
from verifier.fitness import TIE_Z, mean_fitness, rank
from verifier.ladder import LadderError, Rung, get_ladder, get_rung
from verifier.train import TRAIN_LOG

REPORT_FILE = "report.html"


class ReportError(ValueError):
    """Nothing to report on: no run directory, no archive, no verified design yet."""


def open_run_archive(run_dir: Path) -> Archive:
    """The archive of an existing run directory (never creates one, unlike Archive.open)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReportError(f"no run directory {run_dir}: start one with `python cli.py run`, or pass --run-dir")
    if not (run_dir / "archive.db").is_file() and not recorded_archive_url(run_dir):
        raise ReportError(f"{run_dir} holds no archive (no archive.db): is it a run directory?")
    return open_archive(run_dir)


# ---------------------------------------------------------------------------
# Per-rung fitness (what show and the plots read)


def rung_of(key: str) -> Rung | None:
    """The rung a verification's key ("LADDER/RUNG") names, or None for a key from elsewhere."""
    ladder, _, name = key.partition("/")
    try:
        return get_rung(ladder, name) if name else None
    except LadderError:
        return None


def _score_input(rung: Rung, metrics: dict) -> dict | None:
    """The metrics rung_score reads, or None when the run has no usable score (diverged)."""
    accuracy = metrics.get("accuracy") or {}
    if rung.kind == "synthetic":
        return {"accuracy": accuracy} if accuracy else None
    bpb = metrics.get("bpb")
    if not isinstance(bpb, (int, float)) or not math.isfinite(bpb):
        return None
    return {"bpb": bpb, **({"accuracy": accuracy} if accuracy else {})}


@dataclass
class RungFitness:
    """A design's fitness at one rung: per seed, their mean, and the noise of the mean."""

    per_seed: dict[int, float]
    fitness: float
    sigma: float


def rung_fitness(rung: Rung, runs: list[VerificationRecord], baseline: list[VerificationRecord]) -> RungFitness | None:
    """Fitness of `runs` against the baseline's runs at the same rung (None if either has no score).

    The noise is verifier.fitness.mean_fitness's, as everywhere else.
    """
    base = [m for m in (_score_input(rung, v.metrics) for v in baseline) if m is not None]
    mine = {v.seed: m for v in runs if (m := _score_input(rung, v.metrics)) is not None}
    if not base or not mine:
        return None
    mean = mean_fitness(rung.name, rung.kind, list(mine.values()), base)
    return RungFitness(dict(zip(mine, mean.per_run)), mean.fitness, mean.sigma)


def _by_rung(verifications: list[VerificationRecord]) -> dict[str, dict[str, list[VerificationRecord]]]:
    """rung key -> design -> its verifications there."""
    out: dict[str, dict[str, list[VerificationRecord]]] = defaultdict(lambda: defaultdict(list))
    for v in verifications:
        out[v.rung][v.design].append(v)
    return out


# ---------------------------------------------------------------------------
# The leaderboard


@dataclass
class Row:
    rank: int
    design: str
    parents: tuple[str, ...]
    mode: str
    rung: str  # the highest rung reached (with a score)
    fitness: float
    noise: float
    repeats: int  # training seeds behind the fitness
    params: int | None  # non-embedding parameters at that rung
    metrics: dict  # key metrics at that rung, means over seeds
    dollars: float  # LLM spend of the design session
    title: str  # the proposal's title (a seed: its family)
    compute_s: float = 0.0  # checker and verification seconds spent on the design
    status: str = ""

    def to_dict(self) -> dict:
        return {**asdict(self), "parents": list(self.parents)}


def leaderboard(archive, ladder: str) -> list[Row]:
    """Every verified design, best first, ranks shared within the noise."""
    rungs = get_ladder(ladder)
    view = view_from_archive(archive, ladder)
    verified = {c.name: c for c in view.verified}
    ranked = rank({n: (c.fitness, c.sigma) for n, c in verified.items()}, TIE_Z)
    runs: dict[tuple[str, str], list[dict]] = defaultdict(list)
    wall: Counter[str] = Counter()
    for v in archive.verifications():
        runs[(v.design, v.rung)].append(v.metrics)
        wall[v.design] += v.wall_time_s
    rows = []
    for name, r, fitness, noise in ranked:
        c, record = verified[name], archive.get_design(name)
        rung = rungs[c.rung]
        metrics = key_metrics(rung.kind, runs[(name, f"{ladder}/{rung.name}")])
        costs = archive.cost_summary(design=name)
        proposal = record.proposal if isinstance(record.proposal, dict) else {}
        rows.append(Row(r, name, record.parents, record.mode, rung.name, fitness, noise, c.repeats,
                        metrics.pop("params", None), metrics, sum(v["dollars"] for v in costs.values()),
                        proposal.get("title") or record.family or "",
                        compute_s=wall[name] + sum(v["compute_s"] for v in costs.values()), status=record.status))
    return rows


def key_metrics(kind: str, runs: list[dict]) -> dict:
    """The metrics a leaderboard shows for a rung kind, each the mean over the seeds that have it."""

    def mean(key):
        values = [m[key] for m in runs if isinstance(m.get(key), (int, float)) and math.isfinite(m[key])]
        return statistics.mean(values) if values else None

    out = {"params": runs[0].get("params") if runs else None}
    keys = ("bpb", "val_loss", "flops_per_token", "tokens_per_s") if kind == "lm" else ("mean_accuracy",)
    out.update({k: mean(k) for k in keys})
    return out


TABLE_METRICS = {"bpb": "bpb {:.4f}", "mean_accuracy": "acc {:.3f}"}


def leaderboard_table(run_dir: Path, run, limit: int = 20) -> Table:
    """The leaderboard of a run directory as a rich table; `run` is a RunConfig or a ladder name."""
    ladder = getattr(run, "ladder", run)
    archive = open_archive(run_dir)
    try:
        rows = leaderboard(archive, ladder)
    finally:
        archive.close()
    return rows_table(rows, ladder, limit)


def rows_table(rows: list[Row], ladder: str, limit: int | None = 20) -> Table:
    shown = rows if limit is None else rows[:limit]
    more = f"; {len(rows) - len(shown)} more" if len(shown) < len(rows) else ""
    table = Table(title=f"leaderboard ({ladder} ladder; fitness = gain over GPT-2 at the highest rung reached, "
                        f"± its noise; equal ranks are ties within {TIE_Z:g} sigma{more})")
    # Names are what `show` takes: never cut. The proposal's title gives way first.
    longest = max((len(n) for r in shown for n in (r.design, *r.parents)), default=6)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("design", no_wrap=True, min_width=longest)
    table.add_column("parents", overflow="fold")
    table.add_column("mode")
    table.add_column("rung")
    table.add_column("fitness", justify="right", no_wrap=True)
    for col in ("params", "metric", "cost"):
        table.add_column(col, justify="right")
    table.add_column("about")
    for row in shown:
        metric = ", ".join(fmt.format(row.metrics[k]) for k, fmt in TABLE_METRICS.items()
                           if row.metrics.get(k) is not None)
        table.add_row(str(row.rank), row.design, "\n".join(row.parents) or "-", row.mode, row.rung,
                      f"{row.fitness:+.4f} ± {row.noise:.4f}", f"{row.params:,}" if row.params else "-", metric,
                      f"${row.dollars:.2f} {_duration(row.compute_s)}", _one_line(row.title, 30))
    return table


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


# ---------------------------------------------------------------------------
# One design in full (markdown)


def show_design(archive, name: str) -> str:
    """Everything about one design as markdown: proposal, reviews, tree, diff, results, costs, session."""
    record = archive.get_design(name)  # UnknownDesign, with close names, when there is none
    tree, tree_error = _tree(archive, name)
    sections = [
        _md_head(record),
        _md_proposal(record),
        _md_reviews(record.reviews),
        "## Unit tree\n\n" + (f"```text\n{tree.view()}\n```" if tree else tree_error),
        _md_diff(archive, record, tree),
        _md_verifications(archive, name),
        _md_costs(archive, name),
        _md_session(record.meta),
    ]
    return "\n\n".join(s for s in sections if s).rstrip() + "\n"


def _tree(archive, name: str) -> tuple[UnitTree | None, str]:
    try:
        tree = UnitTree.from_dict(archive.load_tree_json(name))
    except (MissingArtifact, TreeError) as e:
        return None, f"(tree unreadable: {e})"
    if not tree.units:
        return None, "(no tree: the session ended before any unit was implemented)"
    return tree, ""


def _cell(value) -> str:
    """A value fit for one markdown table cell."""
    text = "-" if value is None else str(value)
    return " ".join(text.split()).replace("|", "\\|")


def _md_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _md_head(record) -> str:
    meta = record.meta or {}
    lines = [f"# {record.name}", "",
             f"- mode: {record.mode}; status: {record.status}; family: {record.family or '-'}",
             f"- parents: {', '.join(record.parents) or '-'}",
             f"- created: {record.created_at:%Y-%m-%d %H:%M:%S} UTC; fingerprint {record.fingerprint[:16]}"]
    if meta.get("outcome"):
        reason = f" ({_one_line(meta['reason'], 200)})" if meta.get("reason") else ""
        lines.append(f"- session outcome: {meta['outcome']}{reason}")
    if meta.get("duplicate_of"):
        lines.append(f"- same code as: {', '.join(meta['duplicate_of'])}")
    paper = meta.get("paper") or {}
    if paper:
        lines.append(f"- paper: {paper.get('title', '')} ({paper.get('year', '')})"
                     + (f", arXiv {paper['arxiv']}" if paper.get("arxiv") else ""))
    return "\n".join(lines)


PROPOSAL_PARTS = (("motivation", "Motivation"), ("idea", "Idea"), ("math", "Math"),
                  ("pseudo_code", "Pseudo-code"), ("expected_effect", "Expected effect"), ("risks", "Risks"))


def _md_proposal(record) -> str:
    proposal = record.proposal
    if not isinstance(proposal, dict):
        return "## Proposal\n\n(none: " + ("a seed of the library)" if record.mode == "seed" else "not recorded)")
    parts = [f"## Proposal: {proposal.get('title', '(untitled)')}"]
    if proposal.get("selected_unit"):
        parts.append(f"Unit to change: `{proposal['selected_unit']}`")
    for key, label in PROPOSAL_PARTS:
        text = proposal.get(key)
        if text:
            body = f"```text\n{text}\n```" if key == "pseudo_code" else str(text)
            parts.append(f"### {label}\n\n{body}")
    if proposal.get("references"):
        parts.append("References: " + ", ".join(map(str, proposal["references"])))
    earlier = (record.meta or {}).get("proposals") or []
    if len(earlier) > 1:
        titles = [f"{i + 1}. {p.get('title', '(untitled)')}" for i, p in enumerate(earlier)]
        parts.append("Proposals over the review rounds:\n\n" + "\n".join(titles))
    return "\n\n".join(parts)


RATINGS = ("novelty", "soundness", "feasibility", "expected_gain")


def _md_reviews(reviews: list) -> str:
    reviews = [r for r in reviews or [] if isinstance(r, dict)]
    if not reviews:
        return "## Reviews\n\n(none)"
    rows = [[r.get("round", i), r.get("verdict"), r.get("overall"),
             *((r.get("ratings") or {}).get(k) for k in RATINGS)] for i, r in enumerate(reviews)]
    parts = ["## Reviews", _md_table(["round", "verdict", "overall", *RATINGS], rows)]
    for i, r in enumerate(reviews):
        text = f"**Round {r.get('round', i)}** ({r.get('verdict')}, {r.get('overall')}/5): {r.get('summary', '')}"
        if r.get("suggestions"):
            text += "\n" + "\n".join(f"- {s}" for s in r["suggestions"])
        if r.get("nearest"):
            text += f"\n\nNearest: {', '.join(map(str, r['nearest']))}"
        parts.append(text)
    return "\n\n".join(parts)


# An added unit whose non-blank lines match a parent unit's this well is diffed against it. Distinct
# units of the seed library score at most 0.58, except blocks of one shape (0.6 to 0.74).
SIMILAR = 0.6


def unit_diff(parent: UnitTree, child: UnitTree, others: tuple[UnitTree, ...] = ()) -> list[tuple[str, str, list[str]]]:
    """What the child changed against the parent, per unit: (unit, what, unified diff lines).

    `what` is "changed", "removed", "added", or "added, from TREE/UNIT" when an added
    unit is mostly the code of a unit of the parent (or of `others`, the other
    parents): a renamed or moved unit then shows as its few changed lines. Units with
    the same code, args and children are left out; args and children changes are
    listed above the code diff.
    """
    out = []
    names = child.reachable() + [n for n in parent.reachable() if n not in child.reachable()]
    for unit in names:
        old, new = parent.units.get(unit), child.units.get(unit)
        if old is None and new is None:
            continue
        what, source = ("changed", f"{parent.name}/{unit}") if old and new else ("removed", "") if old else \
            ("added", "")
        if old is None:
            match = _closest_unit(new.code, (parent, *others))
            if match is not None:
                tree, old = match
                what, source = f"added, from {tree.name}/{old.name}", f"{tree.name}/{old.name}"
        notes = []
        if old is not None and new is not None:
            if old.code == new.code and old.args == new.args and old.children == new.children:
                continue
            notes += [f"# args {k}: {_arg(old.args, k)} -> {_arg(new.args, k)}"
                      for k in sorted(set(old.args) | set(new.args))
                      if old.args.get(k, _UNSET) != new.args.get(k, _UNSET)]
            if old.children != new.children:
                notes.append(f"# children: {old.children} -> {new.children}")
        lines = difflib.unified_diff((old.code if old else "").splitlines(), (new.code if new else "").splitlines(),
                                     fromfile=source or "/dev/null",
                                     tofile=f"{child.name}/{unit}" if new else "/dev/null", lineterm="")
        out.append((unit, what, notes + list(lines)))
    return out


_UNSET = object()


def _arg(args: dict, key: str) -> str:
    return repr(args[key]) if key in args else "(unset)"


def _closest_unit(code: str, trees: tuple[UnitTree, ...]):
    """(tree, unit) of the most similar unit code among `trees`, if similar enough."""
    best, best_ratio = None, SIMILAR
    lines = [line for line in code.splitlines() if line.strip()]
    for tree in trees:
        for unit in tree.units.values():
            theirs = [line for line in unit.code.splitlines() if line.strip()]
            matcher = difflib.SequenceMatcher(None, theirs, lines, autojunk=False)
            if matcher.real_quick_ratio() >= best_ratio and matcher.quick_ratio() >= best_ratio:
                ratio = matcher.ratio()
                if ratio >= best_ratio:
                    best, best_ratio = (tree, unit), ratio
    return best


def _md_diff(archive, record, tree: UnitTree | None) -> str:
    if not record.parents:
        return ""
    head = f"## Changes against {record.parents[0]}"
    if tree is None:
        return f"{head}\n\n(no tree to compare)"
    try:
        parent, *others = (resolve(p, archive) for p in record.parents)
    except (MissingArtifact, TreeError) as e:
        return f"{head}\n\n(parent tree unreadable: {e})"
    changes = unit_diff(parent, tree, tuple(others))
    if not changes:
        return f"{head}\n\n(no unit differs: the same code as the parent)"
    parts = [head, "Units: " + ", ".join(f"{unit} ({what})" for unit, what, _ in changes)]
    for unit, what, lines in changes:
        parts.append(f"### {unit} ({what})\n\n```diff\n" + "\n".join(lines) + "\n```")
    return "\n\n".join(parts)


SHOWN_METRICS = {"lm": ("bpb", "val_loss", "train_loss", "params", "flops_per_token", "tokens_per_s"),
                 "synthetic": ("mean_accuracy", "params")}


def _fmt(value) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "-" if value is None else str(value)
    if isinstance(value, int) or (abs(value) >= 1000 and float(value).is_integer()):
        return f"{int(value):,}"
    if abs(value) >= 1e5:
        return f"{value:.3g}"
    return f"{value:.4f}" if abs(value) < 100 else f"{value:.1f}"


def _md_verifications(archive, name: str) -> str:
    mine = _by_rung(archive.verifications(design=name))
    failed = archive.events(kind="verification_failed", design=name)
    if not mine and not failed:
        return "## Verification\n\n(not verified yet)"
    parts = ["## Verification"]
    for key, runs in mine.items():
        rung = rung_of(key)
        if rung is None:
            parts.append(f"### {key}\n\n" + _md_table(["seed", "metrics"], [[v.seed, json.dumps(v.metrics)]
                                                                              for v in runs[name]]))
            continue
        baseline = archive.verifications(design=BASELINE, rung=key)
        fit = rung_fitness(rung, runs[name], baseline)
        keys = list(SHOWN_METRICS[rung.kind])
        tasks = sorted({t for v in runs[name] for t in (v.metrics.get("accuracy") or {})})
        rows = [[v.seed, *(_fmt(v.metrics.get(k)) for k in keys),
                 *(_fmt((v.metrics.get("accuracy") or {}).get(t)) for t in tasks),
                 f"{fit.per_seed[v.seed]:+.4f}" if fit and v.seed in fit.per_seed else "-", _duration(v.wall_time_s)]
                for v in sorted(runs[name], key=lambda v: v.seed)]
        summary = (f"fitness vs GPT-2: **{fit.fitness:+.4f} ± {fit.sigma:.4f}** over {len(fit.per_seed)} seed(s) "
                   f"against {len(baseline)} GPT-2 run(s)" if fit else
                   "fitness vs GPT-2: - (no usable score here or no GPT-2 run at this rung)")
        parts.append(f"### {key}\n\n{summary}\n\n" + _md_table(["seed", *keys, *tasks, "fitness", "wall"], rows))
    if failed:
        rows = [[e.payload.get("rung"), e.payload.get("seed"), e.payload.get("status"),
                 _one_line(e.payload.get("error", ""), 160)] for e in failed]
        parts.append("### Failed verifications\n\n" + _md_table(["rung", "seed", "status", "error"], rows))
    return "\n\n".join(parts)


COST_FIELDS = ("calls", "prompt_tokens", "completion_tokens", "dollars", "compute_s")


def _md_costs(archive, name: str) -> str:
    costs = archive.cost_summary(design=name)
    training = sum(v.wall_time_s for v in archive.verifications(design=name))
    if not costs and not training:
        return ""
    rows = [[role, *(_fmt(c[k]) if k != "dollars" else f"{c[k]:.4f}" for k in COST_FIELDS)]
            for role, c in costs.items()]
    if training:
        rows.append(["verification (training)", "-", "-", "-", "-", f"{training:.1f}"])
    return "## Costs\n\n" + _md_table(["role", *COST_FIELDS], rows)


def _md_session(meta: dict) -> str:
    meta = meta or {}
    plan, attempts = meta.get("plan") or {}, meta.get("attempts") or []
    if not plan and not attempts:
        return ""
    parts = [f"## Design session ({meta.get('designer', 'designer')}): {meta.get('outcome', '-')}"]
    if plan.get("tasks"):
        parts.append("Plan:\n\n" + "\n".join(
            f"{i + 1}. `{t.get('unit')}` ({t.get('action')}): {_one_line(t.get('description', ''), 160)}"
            for i, t in enumerate(plan["tasks"])))
    if attempts:
        rows = [[a.get("unit"), a.get("attempt"), "yes" if a.get("chosen") else "",
                 "pass" if a.get("ok") else "fail", a.get("rating"), "yes" if a.get("accept") else "no",
                 _one_line(a.get("error") or a.get("summary") or a.get("notes") or "", 120)] for a in attempts]
        parts.append(_md_table(["unit", "try", "chosen", "check", "rating", "accepted", "notes"], rows))
    return "\n\n".join(parts)


def _one_line(text, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------------------
# SVG: a frame, ticks, and the four plots


PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")


@dataclass
class Frame:
    """Maps data (x0..x1, y0..y1) onto the inner box of a width x height drawing."""

    x0: float
    x1: float
    y0: float
    y1: float
    width: int = 720
    height: int = 380
    left: int = 70
    right: int = 20
    top: int = 34
    bottom: int = 48

    def __post_init__(self) -> None:
        # A flat range would divide by zero: widen it around its value.
        if self.x1 <= self.x0:
            self.x0, self.x1 = self.x0 - 0.5 * (abs(self.x0) or 1), self.x1 + 0.5 * (abs(self.x1) or 1)
        if self.y1 <= self.y0:
            self.y0, self.y1 = self.y0 - 0.5 * (abs(self.y0) or 1), self.y1 + 0.5 * (abs(self.y1) or 1)

    def px(self, x: float) -> float:
        return self.left + (x - self.x0) / (self.x1 - self.x0) * (self.width - self.left - self.right)

    def py(self, y: float) -> float:
        return self.height - self.bottom - (y - self.y0) / (self.y1 - self.y0) * (self.height - self.top - self.bottom)


def padded(lo: float, hi: float, share: float = 0.06) -> tuple[float, float]:
    pad = (hi - lo) * share or (abs(hi) * share or 1.0)
    return lo - pad, hi + pad


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2 or 5 times a power of ten apart) inside lo..hi."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, count)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step) * step
    return [round(first + i * step, 12) + 0.0 for i in range(int((hi - first) / step + 1e-9) + 1)]


def tick_label(value: float) -> str:
    """Short tick text: 1.5M, 320k, 0.02, -0.1."""
    size = abs(value)
    for factor, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if size >= factor:
            return f"{value / factor:.3g}{suffix}"
    return f"{value:.3g}"


def _esc(text) -> str:
    return html.escape(str(text), quote=True)


def _svg(plot_id: str, frame: Frame, title: str, body: list[str], defs: str = "") -> str:
    return (f'<svg id="{_esc(plot_id)}" class="plot" xmlns="http://www.w3.org/2000/svg" '
            f'viewBox="0 0 {frame.width} {frame.height}" width="{frame.width}" height="{frame.height}" '
            f'role="img" aria-label="{_esc(title)}"><title>{_esc(title)}</title>{defs}'
            f'<text x="{frame.width / 2:.1f}" y="18" class="title">{_esc(title)}</text>' + "".join(body) + "</svg>")


def axes(frame: Frame, xlabel: str, ylabel: str, xticks: bool = True) -> list[str]:
    """Grid, tick labels and axis labels of a frame."""
    out = [f'<rect x="{frame.left}" y="{frame.top}" width="{frame.width - frame.left - frame.right}" '
           f'height="{frame.height - frame.top - frame.bottom}" class="box"/>']
    for y in nice_ticks(frame.y0, frame.y1):
        py = frame.py(y)
        out.append(f'<line x1="{frame.left}" x2="{frame.width - frame.right}" y1="{py:.1f}" y2="{py:.1f}" '
                   'class="grid"/>'
                   f'<text x="{frame.left - 6}" y="{py + 4:.1f}" class="tick" text-anchor="end">{tick_label(y)}</text>')
    if xticks:
        for x in nice_ticks(frame.x0, frame.x1, 7):
            px = frame.px(x)
            out.append(f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{frame.top}" y2="{frame.height - frame.bottom}" '
                       f'class="grid"/><text x="{px:.1f}" y="{frame.height - frame.bottom + 16}" class="tick" '
                       f'text-anchor="middle">{tick_label(x)}</text>')
    out.append(f'<text x="{(frame.left + frame.width - frame.right) / 2:.1f}" y="{frame.height - 8}" '
               f'class="label" text-anchor="middle">{_esc(xlabel)}</text>')
    cy = (frame.top + frame.height - frame.bottom) / 2
    out.append(f'<text x="16" y="{cy:.1f}" class="label" text-anchor="middle" '
               f'transform="rotate(-90 16 {cy:.1f})">{_esc(ylabel)}</text>')
    return out


def fitness_color(fitness: float | None, scale: float) -> str:
    """Diverging colour: red below GPT-2, pale yellow at it, blue above; grey when unverified."""
    if fitness is None or not math.isfinite(fitness):
        return "#cccccc"
    t = max(-1.0, min(1.0, fitness / scale)) if scale > 0 else 0.0
    mid, end = (255, 255, 191), ((69, 117, 180) if t > 0 else (215, 48, 39))
    rgb = (round(m + (e - m) * abs(t)) for m, e in zip(mid, end))
    return "#" + "".join(f"{c:02x}" for c in rgb)


def _color_legend(y: int, scale: float) -> tuple[str, list[str]]:
    stops = "".join(f'<stop offset="{(i / 8):.3f}" stop-color="{fitness_color((i / 4 - 1) * scale, scale)}"/>'
                    for i in range(9))
    defs = f'<defs><linearGradient id="fitness-scale">{stops}</linearGradient></defs>'
    x = 60
    body = [f'<rect x="{x}" y="{y}" width="160" height="10" fill="url(#fitness-scale)" class="legend-bar"/>',
            f'<text x="{x - 4}" y="{y + 9}" class="tick" text-anchor="end">{-scale:+.3g}</text>',
            f'<text x="{x + 164}" y="{y + 9}" class="tick">{scale:+.3g} fitness</text>']
    return defs, body


@dataclass
class DesignPoint:
    """One design as the plots see it."""

    name: str
    order: int  # creation order among the run's designs (seeds: 0)
    parents: tuple[str, ...]
    mode: str
    status: str
    fitness: float | None = None
    sigma: float = 0.0
    rung: str = ""
    created_at: datetime | None = None


def plot_best_fitness(points: list[DesignPoint], rungs: list[str] = ()) -> str:
    """Each design's fitness by creation order (coloured by the rung it reached), the best so far as a step
    line, GPT-2 at 0."""
    designs = [p for p in points if p.mode != "seed"]
    scored = [p for p in designs if p.fitness is not None]
    n = max([p.order for p in designs] + [1])
    values = [0.0] + [v for p in scored for v in (p.fitness - p.sigma, p.fitness + p.sigma)]
    frame = Frame(0.5, n + 0.5, *padded(min(values), max(values)), top=52)
    body = axes(frame, "design session (creation order)", "fitness vs GPT-2")
    body.append(f'<line x1="{frame.left}" x2="{frame.width - frame.right}" y1="{frame.py(0):.1f}" '
                f'y2="{frame.py(0):.1f}" class="baseline"/><text x="{frame.width - frame.right - 4}" '
                f'y="{frame.py(0) - 4:.1f}" class="tick" text-anchor="end">GPT-2</text>')
    best, steps = None, []
    for p in sorted(scored, key=lambda p: p.order):
        if best is None or p.fitness > best:
            if best is not None:
                steps.append((p.order, best))
            best = p.fitness
            steps.append((p.order, best))
    if steps:
        steps.append((n + 0.5, best))
        path = " ".join(f"{frame.px(x):.1f},{frame.py(y):.1f}" for x, y in steps)
        body.append(f'<polyline points="{path}" class="best"/>')
    order = list(rungs) + sorted({p.rung for p in scored} - set(rungs))
    color = {r: PALETTE[(i + 1) % len(PALETTE)] for i, r in enumerate(order)}
    for p in scored:
        x, y = frame.px(p.order), frame.py(p.fitness)
        body.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{frame.py(p.fitness - p.sigma):.1f}" '
                    f'y2="{frame.py(p.fitness + p.sigma):.1f}" class="errorbar"/>'
                    f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" class="point" fill="{color[p.rung]}"><title>'
                    f'{_esc(p.name)}: {p.fitness:+.4f} ± {p.sigma:.4f} at {_esc(p.rung)}</title></circle>')
    reached = [r for r in order if any(p.rung == r for p in scored)]
    for i, r in enumerate(reached):  # one legend row in the top margin
        lx, ly = frame.left + 6 + 120 * i, frame.top - 8
        body.append(f'<circle cx="{lx}" cy="{ly - 4}" r="4" fill="{color[r]}"/>'
                    f'<text x="{lx + 8}" y="{ly}" class="tick">reached {_esc(r)}</text>')
    return _svg("plot-best-fitness", frame, "Best fitness over the run", body)


def phylogeny_layout(points: list[DesignPoint]) -> dict[str, tuple[int, float]]:
    """Row (generation depth) and horizontal slot of every design: parents above children.

    Depth: 0 for designs without parents, else one more than the deepest parent.
    Within a row, designs sit in the order of their parents' mean slot (fewer
    crossing edges), then of creation.
    """
    by_name = {p.name: p for p in points}
    depth: dict[str, int] = {}
    for p in points:  # depth first with a stack: lineages can be longer than Python's recursion limit
        stack, on_stack = [p.name], {p.name}
        while stack:
            name = stack[-1]
            parents = [q for q in by_name[name].parents if q in by_name]
            pending = [q for q in parents if q not in depth and q not in on_stack]
            if pending:  # one at a time, so the stack is a path and on_stack catches only true cycles
                stack.append(pending[0])
                on_stack.add(pending[0])
                continue
            depth[name] = 1 + max((depth[q] for q in parents if q in depth), default=-1)
            on_stack.discard(stack.pop())

    rows: dict[int, list[DesignPoint]] = defaultdict(list)
    for p in points:
        rows[depth[p.name]].append(p)
    slot: dict[str, float] = {}
    for d in sorted(rows):
        def key(p: DesignPoint) -> tuple:
            placed = [slot[q] for q in p.parents if q in slot]
            return (statistics.mean(placed) if placed else -1.0, p.order, p.name)

        for i, p in enumerate(sorted(rows[d], key=key)):
            slot[p.name] = float(i)
    return {name: (depth[name], slot[name]) for name in slot}


def plot_phylogeny(points: list[DesignPoint]) -> str:
    """Designs as nodes (seeds square, failed hollow) coloured by fitness, edges from parents to children."""
    layout = phylogeny_layout(points)
    widest = Counter(d for d, _ in layout.values()).most_common(1)[0][1] if layout else 1
    rows = max((d for d, _ in layout.values()), default=0) + 1
    frame = Frame(0, 1, 0, 1, width=max(720, 120 * widest + 80), height=90 * rows + 40, left=0, right=0, top=0,
                  bottom=0)
    counts = Counter(d for d, _ in layout.values())

    def xy(name: str) -> tuple[float, float]:
        d, s = layout[name]
        gap = (frame.width - 80) / counts[d]
        return 40 + gap * (s + 0.5), 70 + 90 * d

    scale = max([abs(p.fitness) for p in points if p.fitness is not None] + [1e-3])
    defs, body = _color_legend(30, scale)
    for p in points:
        for i, q in enumerate(p.parents):
            if q in layout:
                (x1, y1), (x2, y2) = xy(q), xy(p.name)
                dash = "" if i == 0 else ' stroke-dasharray="4 3"'
                body.append(f'<path d="M{x1:.1f},{y1 + 30:.1f} C{x1:.1f},{y1 + 60:.1f} {x2:.1f},{y2 - 50:.1f} '
                            f'{x2:.1f},{y2 - 10:.1f}" class="edge"{dash}/>')
    for p in points:
        x, y = xy(p.name)
        fill = fitness_color(p.fitness, scale)
        tip = f"{p.name} ({p.mode}, {p.status})" + (f": {p.fitness:+.4f} ± {p.sigma:.4f} at {p.rung}"
                                                   if p.fitness is not None else "")
        cls = "node failed" if p.status in ("failed", "rejected") else "node"
        shape = (f'<rect x="{x - 9:.1f}" y="{y - 9:.1f}" width="18" height="18" fill="{fill}" class="{cls}"/>'
                 if p.mode == "seed" else
                 f'<circle cx="{x:.1f}" cy="{y:.1f}" r="9" fill="{fill if cls == "node" else "none"}" class="{cls}"/>')
        body.append(f'<g class="design" data-design="{_esc(p.name)}"><title>{_esc(tip)}</title>{shape}'
                    f'<text x="{x:.1f}" y="{y + 24:.1f}" class="tick" text-anchor="middle">'
                    f'{_esc(_one_line(p.name, 20))}</text></g>')
    return _svg("plot-phylogeny", frame, "Phylogeny: parents above children (dashed: second parents)", body, defs)


def plot_loss_curves(rung: str, curves: dict[str, list[list[tuple[float, float]]]]) -> str:
    """Training loss against tokens at one rung, one colour per design (GPT-2 in black), every seed drawn."""
    xs = [x for runs in curves.values() for run in runs for x, _ in run]
    ys = [y for runs in curves.values() for run in runs for _, y in run]
    frame = Frame(0, max(xs), *padded(min(ys), max(ys)))
    body = axes(frame, "training tokens", "training loss (nats per token)")
    for i, (design, runs) in enumerate(curves.items()):
        color = "#000000" if design == BASELINE else PALETTE[i % len(PALETTE)]
        for run in runs:
            path = " ".join(f"{frame.px(x):.1f},{frame.py(y):.1f}" for x, y in run)
            body.append(f'<polyline points="{path}" class="curve" stroke="{color}">'
                        f'<title>{_esc(design)}</title></polyline>')
        ly = frame.top + 14 + 15 * i
        lx = frame.width - frame.right - 190
        body.append(f'<line x1="{lx}" x2="{lx + 18}" y1="{ly - 4}" y2="{ly - 4}" stroke="{color}" class="curve"/>'
                    f'<text x="{lx + 24}" y="{ly}" class="tick">{_esc(_one_line(design, 26))}</text>')
    return _svg(f"plot-loss-{_slug(rung)}", frame, f"Loss curves at {rung}", body)


def pareto_front(points: list[tuple[str, float, float]]) -> list[str]:
    """Names of the (name, flops, fitness) points no other point beats on both (fewer FLOPs, higher fitness)."""
    front, best = [], -math.inf
    for name, _flops, fitness in sorted(points, key=lambda p: (p[1], -p[2])):
        if fitness > best:
            front.append(name)
            best = fitness
    return front


def plot_pareto(rung: str, points: list[tuple[str, float, float, float]]) -> str:
    """Fitness against FLOPs per token at one rung (name, flops, fitness, sigma); the front joined."""
    front = pareto_front([(n, f, y) for n, f, y, _ in points])
    flops = [f for _, f, _, _ in points]
    values = [v for _, _, y, s in points for v in (y - s, y + s)]
    frame = Frame(*padded(min(flops), max(flops)), *padded(min(values), max(values)))
    body = axes(frame, "training FLOPs per token (forward + backward)", "fitness vs GPT-2")
    on_front = sorted((p for p in points if p[0] in front), key=lambda p: p[1])
    if len(on_front) > 1:
        path = " ".join(f"{frame.px(f):.1f},{frame.py(y):.1f}" for _, f, y, _ in on_front)
        body.append(f'<polyline points="{path}" class="front"/>')
    for name, f, y, s in points:
        x = frame.px(f)
        cls = "point baseline-point" if name == BASELINE else "point front-point" if name in front else "point other"
        body.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{frame.py(y - s):.1f}" y2="{frame.py(y + s):.1f}" '
                    f'class="errorbar"/><circle cx="{x:.1f}" cy="{frame.py(y):.1f}" r="4.5" class="{cls}">'
                    f'<title>{_esc(name)}: {y:+.4f} ± {s:.4f}, {tick_label(f)} FLOPs/token</title></circle>')
        if name in front or name == BASELINE:
            right = x > frame.width - frame.right - 140  # near the right edge: label on the left
            body.append(f'<text x="{x - 7 if right else x + 7:.1f}" y="{frame.py(y) - 6:.1f}" class="tick" '
                        f'text-anchor="{"end" if right else "start"}">{_esc(_one_line(name, 22))}</text>')
    return _svg(f"plot-pareto-{_slug(rung)}", frame, f"Fitness against FLOPs per token at {rung}", body)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text).strip("-").lower()


# ---------------------------------------------------------------------------
# Reading curves and gathering the run


def train_curve(run_dir: Path, archive, v: VerificationRecord) -> list[tuple[float, float]]:
    """(tokens, training loss) of one verification: its train_log.jsonl, else its curves artifact."""
    log = Path(run_dir) / "verify" / v.design / v.rung.replace("/", "-") / f"seed{v.seed}" / TRAIN_LOG
    entries: list = []
    if log.is_file():
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a half-written last line of a killed run
    elif v.curves_hash:
        try:
            entries = _curve_entries(archive.artifacts.get_json(v.curves_hash))
        except MissingArtifact:
            entries = []
    points = []
    for e in entries:
        if not isinstance(e, dict) or "event" in e:
            continue
        x, y = e.get("tokens", e.get("step")), e.get("loss")
        if isinstance(x, (int, float)) and isinstance(y, (int, float)) and math.isfinite(y):
            points.append((float(x), float(y)))
    return sorted(points)


def _curve_entries(curves) -> list:
    """Entries from a curves artifact: a list of log entries, {"log": [...]}, or columns {"loss": [...], ...}."""
    if isinstance(curves, list):
        return curves
    if isinstance(curves, dict) and isinstance(curves.get("log"), list):
        return curves["log"]
    if isinstance(curves, dict) and isinstance(curves.get("loss"), list):
        xs = curves.get("tokens") or curves.get("step") or list(range(1, len(curves["loss"]) + 1))
        key = "tokens" if curves.get("tokens") else "step"
        return [{key: x, "loss": y} for x, y in zip(xs, curves["loss"])]
    return []


@dataclass
class RunData:
    """Everything the HTML report shows, read from the archive once."""

    run_dir: Path
    ladder: str
    points: list[DesignPoint]
    rows: list[Row]
    by_rung: dict  # rung key -> design -> verifications
    status: Counter = field(default_factory=Counter)
    modes: Counter = field(default_factory=Counter)
    costs: dict = field(default_factory=dict)
    failed_verifications: int = 0


def gather(archive, run_dir: Path, ladder: str) -> RunData:
    records = archive.list_designs()
    verifications = archive.verifications()
    if not verifications:
        raise ReportError(f"no verified designs yet in {run_dir}: nothing to report")
    rows = leaderboard(archive, ladder)
    ranked = {r.design: r for r in rows}
    points, order = [], 0
    for r in records:
        if r.mode != "seed":
            order += 1
        row = ranked.get(r.name)
        points.append(DesignPoint(r.name, 0 if r.mode == "seed" else order, r.parents, r.mode, r.status,
                                  row.fitness if row else None, row.noise if row else 0.0, row.rung if row else "",
                                  r.created_at))
    return RunData(Path(run_dir), ladder, points, rows, _by_rung(verifications),
                   Counter(r.status for r in records), Counter(r.mode for r in records), archive.cost_summary(),
                   len(archive.events(kind="verification_failed")))


def phylogeny_points(points: list[DesignPoint]) -> list[DesignPoint]:
    """The run's designs plus the seeds they descend from and the GPT-2 baseline (other seeds left out)."""
    by_name = {p.name: p for p in points}
    keep = {BASELINE} | {p.name for p in points if p.mode != "seed"}
    todo = list(keep)
    while todo:
        name = todo.pop()
        for q in by_name[name].parents if name in by_name else ():
            if q not in keep:
                keep.add(q)
                todo.append(q)
    return [p for p in points if p.name in keep]


MAX_CURVES = 8  # designs per loss plot, GPT-2 included


def loss_plots(archive, data: RunData) -> list[str]:
    """One loss-curve plot per rung of the ladder that has curves: GPT-2 and the best designs there."""
    plots = []
    for rung in get_ladder(data.ladder):
        runs = data.by_rung.get(f"{data.ladder}/{rung.name}", {})
        fitness = _fitness_at(rung, runs)
        chosen = [BASELINE] + sorted((d for d in runs if d != BASELINE), key=lambda d: -fitness.get(d, -math.inf))
        curves = {}
        for design in chosen:
            found = [c for v in sorted(runs.get(design, []), key=lambda v: v.seed)
                     if (c := train_curve(data.run_dir, archive, v))]
            if found:
                curves[design] = found
            if len(curves) == MAX_CURVES:
                break
        if curves:
            plots.append(plot_loss_curves(rung.name, curves))
    return plots


def pareto_plots(data: RunData) -> list[str]:
    """One Pareto plot per language-modeling rung: fitness there against FLOPs per token there."""
    plots = []
    for rung in get_ladder(data.ladder):
        runs = data.by_rung.get(f"{data.ladder}/{rung.name}", {})
        baseline = runs.get(BASELINE, [])
        points = []
        for design, vs in runs.items():
            fit = rung_fitness(rung, vs, baseline)
            flops = [v.metrics["flops_per_token"] for v in vs
                     if isinstance(v.metrics.get("flops_per_token"), (int, float))]
            if fit and flops:
                points.append((design, statistics.mean(flops), fit.fitness, fit.sigma))
        if points:
            plots.append(plot_pareto(rung.name, points))
    return plots


def _fitness_at(rung: Rung, runs: dict[str, list[VerificationRecord]]) -> dict[str, float]:
    baseline = runs.get(BASELINE, [])
    return {d: fit.fitness for d, vs in runs.items() if (fit := rung_fitness(rung, vs, baseline))}


# ---------------------------------------------------------------------------
# The HTML report


STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1200px;color:#222;
padding:0 1em}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.9em;margin:.5em 0}
th,td{padding:.25em .6em;border-bottom:1px solid #eee;text-align:left}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.scroll{overflow-x:auto}.empty{color:#777;font-style:italic}p.note{color:#555;font-size:.9em}
svg.plot{background:#fff;margin:.5em 0;font-family:inherit}
svg .title{font-size:14px;font-weight:600;text-anchor:middle}svg .tick{font-size:10px;fill:#444}
svg .label{font-size:11px;fill:#222}svg .box{fill:none;stroke:#999}svg .grid{stroke:#eee}
svg .baseline{stroke:#000;stroke-dasharray:5 4}svg .best{fill:none;stroke:#1f77b4;stroke-width:2}
svg .point{stroke:#fff}svg .front-point{fill:#d62728}svg .other{fill:#1f77b4}svg .baseline-point{fill:#000}
svg .errorbar{stroke:#999}svg .front{fill:none;stroke:#d62728;stroke-width:1.5}
svg .curve{fill:none;stroke-width:1.3}svg .edge{fill:none;stroke:#999}
svg .node{stroke:#333;stroke-width:1}svg .node.failed{stroke:#999;stroke-dasharray:2 2}
"""


def _html_table(header: list[str], rows: list[list], numeric: set[int] = frozenset()) -> str:
    head = "".join(f'<th{" class=num" if i in numeric else ""}>{_esc(h)}</th>' for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(f'<td{" class=num" if i in numeric else ""}>{_esc(v)}</td>'
                                    for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f'<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _summary_html(data: RunData, run_config: dict | None) -> str:
    parts = []
    if run_config:
        budget = ", ".join(f"{k} {v}" for k, v in (run_config.get("budget") or {}).items() if v is not None)
        parts.append(_html_table(["setting", "value"], [
            ["ladder", run_config.get("ladder")], ["rungs", ", ".join(run_config.get("rungs") or []) or "all"],
            ["designer", ", ".join(run_config.get("llm") or []) or "symbolic"],
            ["corpus", run_config.get("corpus") or "the rungs' own"], ["workers", run_config.get("workers")],
            ["scale", run_config.get("scale")], ["budget", budget or "-"]]))
    parts.append("<h3>Designs</h3>" + _html_table(
        ["status", "designs"], sorted(data.status.items()), {1}) + _html_table(["mode", "designs"],
                                                                             sorted(data.modes.items()), {1}))
    rows = []
    for key, designs in data.by_rung.items():
        vs = [v for runs in designs.values() for v in runs]
        rows.append([key, len(designs), len(vs), _duration(sum(v.wall_time_s for v in vs))])
    parts.append("<h3>Verifications</h3>" + _html_table(["rung", "designs", "runs", "training time"], rows, {1, 2})
                 + (f'<p class="note">{data.failed_verifications} verification(s) failed (see `show DESIGN`).</p>'
                    if data.failed_verifications else ""))
    cost_rows = [[role, *(f"{c[k]:.4f}" if k == "dollars" else _fmt(c[k]) for k in COST_FIELDS)]
                 for role, c in data.costs.items()]
    total = sum(c["dollars"] for c in data.costs.values())
    parts.append("<h3>Costs</h3>" + (_html_table(["role", *COST_FIELDS], cost_rows, {1, 2, 3, 4, 5})
                                     + f'<p class="note">total LLM spend ${total:.4f}</p>' if cost_rows else
                                     '<p class="empty">no agent costs recorded</p>'))
    return "\n".join(parts)


def _leaderboard_html(rows: list[Row]) -> str:
    if not rows:
        return '<p class="empty">no verified designs yet</p>'
    body = [[r.rank, r.design, ", ".join(r.parents) or "-", r.mode, r.rung, f"{r.fitness:+.4f}", f"{r.noise:.4f}",
             f"{r.params:,}" if r.params else "-",
             ", ".join(fmt.format(r.metrics[k]) for k, fmt in TABLE_METRICS.items() if r.metrics.get(k) is not None),
             f"${r.dollars:.2f}", _duration(r.compute_s), r.title] for r in rows]
    return _html_table(["#", "design", "parents", "mode", "rung", "fitness", "noise", "params", "metric", "$",
                        "compute", "about"], body, {0, 5, 6, 7, 9, 10})


def render_report(archive, data: RunData, run_config: dict | None = None) -> str:
    """The report as one HTML document: summary, leaderboard and the four kinds of plot."""
    loss, pareto = loss_plots(archive, data), pareto_plots(data)
    best = data.rows[0] if data.rows else None
    headline = (f"Best: <b>{_esc(best.design)}</b>, fitness {best.fitness:+.4f} ± {best.noise:.4f} at "
                f"{_esc(best.rung)}" if best else "No verified design yet.")
    none = '<p class="empty">{}</p>'
    sections = [
        ("summary", "Run summary", _summary_html(data, run_config)),
        ("leaderboard", "Leaderboard", '<div class="scroll">' + _leaderboard_html(data.rows) + "</div>"),
        ("fitness-over-time", "Best fitness over time",
         plot_best_fitness(data.points, [r.name for r in get_ladder(data.ladder)])
         + '<p class="note">Each design\'s fitness at the highest rung it reached (bars: ± noise); the line is the '
         "best so far.</p>"),
        ("phylogeny", "Phylogeny", '<div class="scroll">' + plot_phylogeny(phylogeny_points(data.points))
         + "</div>"),
        ("loss-curves", "Loss curves per rung", "".join(loss) or none.format("no training curves recorded")),
        ("pareto", "Pareto front: fitness against FLOPs per token",
         "".join(pareto) or none.format("no language-modeling rung with FLOPs measured yet")),
    ]
    body = "".join(f'<section id="{sid}"><h2>{_esc(title)}</h2>{content}</section>' for sid, title, content in sections)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Genesys run report: '
            f'{_esc(data.run_dir.name)}</title><style>{STYLE}</style></head><body>'
            f'<h1>Genesys run report: {_esc(data.run_dir)}</h1><p>Ladder <b>{_esc(data.ladder)}</b>; '
            f'{sum(data.status.values())} designs; {headline}</p>{body}'
            f'<footer><p class="note">Written {when} by Genesys from {_esc(data.run_dir / "archive.db")}.</p>'
            "</footer></body></html>\n")


def _run_settings(run_dir: Path) -> dict | None:
    """RUN_DIR/run.json as plain data for the summary (None when absent or unreadable)."""
    try:
        data = json.loads((run_dir / "run.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def write_report(run_dir: Path, ladder: str, out: Path | None = None) -> Path:
    """Write the run's HTML report (default RUN_DIR/report.html) atomically; returns its path."""
    run_dir = Path(run_dir)
    archive = open_run_archive(run_dir)
    try:
        data = gather(archive, run_dir, ladder)
        run_config = _run_settings(run_dir)
        document = render_report(archive, data, run_config)
    finally:
        archive.close()
    out = Path(out) if out is not None else run_dir / REPORT_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(document, encoding="utf-8")
    tmp.replace(out)
    return out
