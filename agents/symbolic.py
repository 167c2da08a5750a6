"""The symbolic designer: the five roles of the design graph without an LLM (the default designer).

It proposes edits over the unit library (agents.mutations: swap a unit for one of the
same role from another seed, a short convolution or an output gate around a token
mixer, two mixers interleaved across layers by block_loc, a hyperparameter change, a
crossover graft, a scratch combination), writes the proposal from the units' docs and
the reference library, reviews it by novelty (fingerprints, nearest designs) and
feasibility (parameters and FLOPs measured in the sandbox), plans and "codes" it by
replaying the proposal's recipe, and rates each unit from its check report.

    designer = SymbolicDesigner()
    call = designer.propose(ProposalContext(mode="mutation", parents=[brief], seed=3))
"""

from __future__ import annotations

import random
import re

from agents.base import (CoderContext, ObserverContext, PlanContext, ProposalContext, ReviewContext, RoleCall)
from agents.mutations import (HOME_SEED, Edit, RecipeError, apply_recipe, build_recipe, candidate_edits, label,
                              unit_code)
from agents.schemas import Observation, Plan, Proposal, Ratings, Review, UnitCode, UnitTask
from designs.seeds import library_units, load_seed, unit_doc
from designs.tree import TreeError, UnitTree
from knowledge.library import load_library, records_for_unit
from verifier.checker import CheckOptions

# What each library unit brings, for the proposal text: (what it is, its strength, its weakness).
TRAITS = {
    "MHA": ("causal softmax attention with rotary positions", "exact retrieval of any earlier token",
            "time quadratic in the context and a KV cache that grows with it"),
    "GatedLinearAttention": ("linear attention with a data-dependent forget gate per key channel",
                             "linear time, a constant-size state, learned forgetting",
                             "a fixed-size state recalls exact tokens less reliably than attention"),
    "MultiScaleRetention": ("linear attention with a fixed decay per head (retention)",
                            "heads at several time scales, chunked and recurrent forms",
                            "the decay ignores the data, so nothing is kept longer on demand"),
    "HyenaOperator": ("implicit long convolutions interleaved with elementwise gates",
                      "sub-quadratic global mixing by FFT", "filters do not depend on the data; weaker recall"),
    "Mamba2Mixer": ("a selective state-space model with a scalar decay per head (SSD)",
                    "data-dependent selection in linear time", "a small state; exact recall is weaker"),
    "DeltaNetMixer": ("linear attention whose memory is edited by the delta rule",
                      "error-correcting writes keep key-value associations sharp", "no forgetting of stale content"),
    "GatedDeltaNetMixer": ("the delta rule with a data-dependent decay", "precise writes with adaptive forgetting",
                           "a costlier chunked computation"),
    "RWKV6TimeMix": ("RWKV-6 time mixing with data-dependent token shift and decay",
                     "a per-channel, per-token decay in linear time", "small training chunks, slow on CPU"),
    "TTTLinear": ("a test-time-training layer whose state is a linear model fitted while reading",
                  "an expressive, gradient-updated state", "a mini-batch inner loop, slow on CPU"),
    "GeluMLP": ("a two-layer GELU MLP", "simple and cheap", "no gating"),
    "SwiGLU": ("a gated SiLU feed-forward layer (GLU variant)", "better loss per parameter than a GELU MLP",
               "three matrices instead of two"),
    "RWKV6ChannelMix": ("RWKV channel mixing with a token shift and a receptance gate",
                        "sees the previous token at no cost", "a wider hidden layer"),
    "LayerNorm": ("LayerNorm (centering and scaling per token)", "the classic, stable choice", "slightly costlier"),
    "RMSNorm": ("RMSNorm (scaling by the root mean square, no centering)", "cheaper, as stable in practice",
                "no bias"),
}
OPERATOR_REFS = {"insert_conv": ["h3-2022", "primer-2021", "zoology-2023"],
                 "insert_gate": ["glu-variants-2020", "flash-gau-2022", "gated-cnn-2016"],
                 "interleave": ["samba-2024", "jamba-2024", "griffin-2024", "mamba-hybrid-study-2024"],
                 "cross_interleave": ["samba-2024", "jamba-2024", "mamba-hybrid-study-2024"],
                 "scratch": ["genesys-2025"], "graft": ["genesys-2025"], "swap": [], "hyper": []}
# Priors of the reviewer per operator: (novelty, soundness, expected gain); feasibility is measured.
PRIORS = {"swap": (4, 4, 4), "insert_conv": (4, 4, 4), "insert_gate": (4, 5, 3), "interleave": (4, 4, 4),
          "hyper": (3, 5, 3), "graft": (4, 4, 4), "cross_interleave": (4, 4, 4), "scratch": (4, 4, 4)}
MEASURE_SIZE = (128, 4)  # d_model, n_block at which the reviewer compares a design with its parent
CHECK_FLOPS_LIMIT = CheckOptions().error_ratio  # the checker's efficiency limit against GPT-2
FLOPS_REJECT_SHARE = 0.9  # the reviewer's estimate (FLOPs per parameter at one size) is rough: keep a margin
RETRY_STATUSES = ("sandbox.timeout", "sandbox.killed", "sandbox.out_of_memory", "efficiency.time")


def _what(unit: str) -> str:
    if unit in TRAITS:
        return TRAITS[unit][0]
    code = library_units().get(unit, "")
    return unit_doc(unit, code).split("\n")[0] if code else unit


def _strength(unit: str) -> str:
    return TRAITS[unit][1] if unit in TRAITS else "its own mechanism"


def _weakness(unit: str) -> str:
    return TRAITS[unit][2] if unit in TRAITS else "its known limits"


def _math(unit: str) -> str:
    """The equation lines of a library unit's docstring."""
    code = library_units().get(unit)
    if not code:
        return ""
    doc = unit_doc(unit, code).splitlines()
    lines = [ln.strip() for ln in doc if ln.startswith(" ") and ("=" in ln or "<-" in ln)]
    return "\n".join(lines[:6]) or doc[0]


def _references(units: list[str], operator: str, extra: list[str]) -> list[str]:
    library = load_library()
    ids = [r for r in OPERATOR_REFS.get(operator, []) if r in library]
    for unit in units:
        ids += [r.id for r in _unit_records(unit)[:2]]
    ids += [r for r in extra if r in library]
    return list(dict.fromkeys(ids))[:8]


def _unit_records(unit: str) -> list:
    """The library records of a unit, the paper of its home seed first."""
    records = records_for_unit(unit)
    return sorted(records, key=lambda r: HOME_SEED.get(unit) not in r.seeds)


def _mechanism(units: list[str]) -> str:
    notes = [f"[{recs[0].id}] {recs[0].mechanism}" for recs in (_unit_records(u) for u in units) if recs]
    return " ".join(dict.fromkeys(notes))


# ---------------------------------------------------------------- proposal text


def _text(edit: Edit, parents: list[UnitTree]) -> dict:
    """Motivation, idea, math, pseudo-code, expected effect and risks of an edit, in words."""
    p, op = edit.params, edit.operator
    if op == "scratch":
        mixers, norm, ffn = p["mixers"], p["norm"], p["ffn"]
        names = " and ".join(mixers)
        return dict(
            units=[norm, *mixers, ffn],
            motivation=f"No seed pairs {names} with {norm} and {ffn}; a fresh pre-norm block tests that combination "
                       f"on its own terms rather than as an edit of a tuned parent.",
            idea=f"A pre-norm residual block: {_what(norm)}, then "
                 f"{' alternating by layer with '.join(_what(m) for m in mixers)} as the token mixer, then "
                 f"{_what(ffn)}. {_mechanism(mixers)}",
            math="H = X + Mixer(Norm(X));  Y = H + FFN(Norm(H))\n" + _math(mixers[0]),
            pseudo="h, Z = mixer(norm(x), **Z); x = x + h\nh, Z = ffn(norm(x), **Z); return x + h, Z",
            effect=f"Expected: {_strength(mixers[0])}" + (f", and {_strength(mixers[1])} on alternate layers"
                                                          if len(mixers) == 2 else "") + "; loss within a few percent "
                   "of the seeds at equal parameters.",
            risks=f"{_weakness(mixers[0])}; an untested combination may train less stably than a tuned seed.")
    base = parents[0]
    slot = edit.selected
    content = label(base, slot)
    if op == "swap":
        donor = p["donor"]
        return dict(
            units=[content, donor],
            motivation=f"{base.name} uses {_what(content)} in its {slot} slot, whose weakness is: "
                       f"{_weakness(content)}.",
            idea=f"Replace it with {_what(donor)}, taken unchanged from the {donor} unit of the library (its "
                 f"hyperparameters as in its home seed); the rest of {base.name} is kept. {_mechanism([donor])}",
            math=_math(donor), pseudo=f"{slot}(X) := {donor}(X)   # same interface: (B, T, D) -> (B, T, D)",
            effect=f"Expected: {_strength(donor)}, at a similar parameter count.",
            risks=f"{_weakness(donor)}; the block's other units were tuned around {content}.")
    if op == "insert_conv":
        return dict(
            units=[content],
            motivation=f"{_what(content).capitalize()} sees every earlier token only through its mixing rule; "
                       f"local patterns (the previous token, short n-grams) must be learned through it.",
            idea=f"Put a short causal depthwise convolution (4 taps, residual) in front of {content}"
                 + (f" in the {slot} slot" if slot != content else "") + ", as H3, Primer and the Mamba and DeltaNet "
                 "layers do, so its inputs already carry their predecessors.",
            math="U_t = X_t + sum_{j=0}^{k-1} w_j * X_{t-j}  (per channel);  Y = Mixer(U)",
            pseudo=f"u = x + causal_depthwise_conv(x, k=4)\ny, Z = {content}(u, **Z)",
            effect="Expected: better recall and lower loss early in training for a few embed_dim parameters.",
            risks="Small extra time per layer; little gain if the mixer already mixes locally.")
    if op == "insert_gate":
        return dict(
            units=[content],
            motivation=f"{_what(content).capitalize()} adds whatever it retrieves to the residual stream; a token "
                       f"cannot suppress an unhelpful retrieval.",
            idea=f"Multiply the output of {content} elementwise by a sigmoid gate computed from the "
                 f"same input token (bias 1 at init, so the gate starts open), the output gating of GAU, RetNet "
                 f"and GLA.",
            math="Y = Mixer(X) * sigmoid(X W_g + b_g)",
            pseudo=f"y, Z = {content}(x, **Z)\nreturn y * sigmoid(gate_proj(x)), Z",
            effect="Expected: a small loss improvement and smoother training for embed_dim^2 extra parameters.",
            risks="Adds a d x d matrix per layer; a closed gate could starve the mixer of gradient.")
    if op in ("interleave", "cross_interleave"):
        other = p.get("donor") or label(parents[1], p["donor_slot"])
        source = f"{parents[1].name}'s" if op == "cross_interleave" else "the library's"
        return dict(
            units=[content, other],
            motivation=f"{_what(content).capitalize()} gives {_strength(content)} but suffers from "
                       f"{_weakness(content)}; {_what(other)} has the opposite profile.",
            idea=f"Interleave the two mixers across depth: the {slot} slot builds {content} on most layers and "
                 f"{source} {other} on every second layer, chosen from block_loc (the layer index), as hybrid "
                 f"stacks such as Samba and Jamba do. {_mechanism([other])}",
            math=f"Mixer_i = {other} if (i + 1) % every == 0 else {content}   (i = block_loc[0])",
            pseudo=f"if (layer + 1) % every == 0: mixer = {other}\nelse: mixer = {content}\ny, Z = mixer(x, **Z)",
            effect=f"Expected: {_strength(content)} together with {_strength(other)}; hybrids usually beat both "
                   f"pure stacks at equal size.",
            risks="Layers of two kinds may need different learning rates; the pattern period is a guess.")
    if op == "graft":
        other = label(parents[1], p["donor_slot"])
        return dict(
            units=[content, other],
            motivation=f"{base.name} and {parents[1].name} differ in their {slot} unit: {content} against "
                       f"{other}. {_weakness(content).capitalize()} in {base.name}.",
            idea=f"Crossover: graft {parents[1].name}'s {other} (with its subtree and hyperparameters) into the "
                 f"{slot} slot of {base.name}, keeping the rest of {base.name}. {_mechanism([other])}",
            math=_math(other), pseudo=f"{slot}(X) := {parents[1].name}.{p['donor_slot']}(X)",
            effect=f"Expected: {_strength(other)} inside {base.name}'s otherwise unchanged block.",
            risks=f"{_weakness(other)}; the two parents' hyperparameters may interact.")
    if op == "hyper":
        key, old, new = p["key"], p["old"], p["value"]
        return dict(
            units=[content],
            motivation=f"{base.name} sets {key} = {old} in {slot}; the seed values are defaults, not measured optima "
                       f"at our scale.",
            idea=f"Change {key} from {old} to {new} in {slot} ({_what(content)}), nothing else.",
            math=f"{key}: {old} -> {new}", pseudo=f"kwarg_all['{key}'] = {new!r}",
            effect="Expected: a small change in loss and cost; tells us how sensitive the design is to this knob.",
            risks="A shape constraint (heads dividing the width) may exclude some model sizes.")
    raise RecipeError(f"unknown operator {op!r}")


def _proposal(edit: Edit, recipe: dict, parents: list[UnitTree], mode: str, references: list[str],
              revision: str) -> Proposal:
    text = {k: (v[:1].upper() + v[1:] if isinstance(v, str) else v) for k, v in _text(edit, parents).items()}
    return Proposal(title=edit.title, mode=mode, parents=recipe["parents"], selected_unit=edit.selected,
                    motivation=(revision + " " if revision else "") + text["motivation"], idea=text["idea"],
                    math=text["math"], pseudo_code=text["pseudo"], expected_effect=text["effect"],
                    risks=text["risks"], references=_references(text["units"], edit.operator, references),
                    recipe=recipe)


# ---------------------------------------------------------------- review helpers


def _max_similarity(lines: list[str]) -> float:
    """The highest similarity figure (0-1) quoted in the nearest-design lines, 0 when none."""
    best = 0.0
    for line in lines:
        for m in re.finditer(r"(?:similarity|sim|cosine)\D{0,4}(\d*\.\d+|[01])\b|\((\d*\.\d+)\)", line, re.I):
            value = float(m.group(1) or m.group(2))
            if value <= 1:
                best = max(best, value)
    return best


def _intensity(child: dict, ref: dict) -> tuple[float, float, float]:
    """Parameter ratio, FLOPs ratio, and compute per token at matched parameters (FLOPs ratio / params ratio)."""
    params = child["non_embedding_params"] / max(ref["non_embedding_params"], 1)
    flops = child["flops_train_per_token"] / max(ref["flops_train_per_token"], 1)
    return params, flops, flops / params


def _feasibility(measured: dict) -> tuple[int, str]:
    """Rating 1-5 from the design's FLOPs per parameter against the reference's (its parent), and a sentence.

    measured["gpt2"], when given, is GPT-2 at the same size: the checker refuses a design above
    CHECK_FLOPS_LIMIT x GPT-2's FLOPs at matched parameters, so a design estimated past
    FLOPS_REJECT_SHARE of that limit is rated 1 (rejected) before a checker run is spent on it.
    """
    child, ref = measured["child"], measured["reference"]
    params, flops, intensity = _intensity(child, ref)
    score = 5 if intensity <= 1.5 else 4 if intensity <= 2.2 else 3 if intensity <= 3.0 else 2
    score -= 1 if params > 2.0 else 0
    d, n = MEASURE_SIZE
    sentence = (f"Measured in the sandbox at d_model {d}, {n} blocks: {child['non_embedding_params']:,} non-embedding "
                f"parameters ({params:.2f}x {measured['reference_name']}), {child['flops_train_per_token'] / 1e6:.2f} "
                f"MFLOPs per token for a training step ({flops:.2f}x), so {intensity:.2f}x the compute per token at "
                f"matched parameters.")
    if measured.get("gpt2"):
        vs_gpt2 = _intensity(child, measured["gpt2"])[2]
        limit = CHECK_FLOPS_LIMIT * FLOPS_REJECT_SHARE
        if vs_gpt2 > limit:
            score = 1
            sentence += (f" Against GPT-2 that is about {vs_gpt2:.2f}x the compute per token, past {limit:.1f}x "
                         f"(the checker refuses more than {CHECK_FLOPS_LIMIT:.1f}x): not feasible.")
        elif measured["reference_name"] != "gpt2":
            sentence += f" Against GPT-2: about {vs_gpt2:.2f}x (the checker's limit is {CHECK_FLOPS_LIMIT:.1f}x)."
    return max(score, 1), sentence


# ---------------------------------------------------------------- the designer


class SymbolicDesigner:
    """The five roles without an LLM; deterministic given the contexts' seeds.

    measure: the reviewer measures parameters and FLOPs in the sandbox (one child process per
    review, a few seconds); without it, feasibility is a stated prior. donors: the library
    units edits may bring in (default: all). threshold: the overall rating that accepts.
    """

    name = "symbolic"

    def __init__(self, measure: bool = True, donors: tuple[str, ...] | None = None, threshold: float = 4.0,
                 measure_timeout: float = 240.0):
        self.measure = measure
        self.donors = tuple(donors) if donors else None
        self.threshold = threshold
        self.measure_timeout = measure_timeout

    # ---- proposer

    def propose(self, ctx: ProposalContext) -> RoleCall[Proposal]:
        try:
            parents = [UnitTree.from_dict(p.tree, f"parent {p.name}") for p in ctx.parents]
            edits = candidate_edits(ctx.mode, parents, self.donors)
        except (RecipeError, TreeError) as e:
            return RoleCall(None, error=str(e))
        tried = set(ctx.siblings) | ({ctx.previous.title} if ctx.previous else set())
        rng = random.Random(f"{ctx.seed}|{ctx.mode}|{','.join(t.name for t in parents)}")
        operators = sorted({e.operator for e in edits})
        rng.shuffle(operators)
        for operator in operators:
            pool = [e for e in edits if e.operator == operator and e.title not in tried]
            rng.shuffle(pool)
            for edit in pool[:20]:
                try:
                    recipe = build_recipe(edit, parents)
                except (RecipeError, TreeError):
                    continue  # an edit the tree refuses (a name clash in a graft): try the next
                return RoleCall(_proposal(edit, recipe, parents, ctx.mode, ctx.references, _revision_note(ctx)))
        return RoleCall(None, error=f"no untried {ctx.mode} edit is left for "
                                    f"{', '.join(t.name for t in parents) or 'the unit library'}")

    # ---- reviewer

    def review(self, ctx: ReviewContext) -> RoleCall[Review]:
        proposal = ctx.proposal
        if not proposal.recipe:
            return RoleCall(None, error="the symbolic reviewer needs a proposal with a recipe (a symbolic proposal)")
        try:
            parents = {p.name: UnitTree.from_dict(p.tree, f"parent {p.name}") for p in ctx.parents}
            base = parents.get(proposal.recipe.get("base")) if proposal.recipe.get("base") else None
            child = apply_recipe(proposal.recipe, base)
        except (RecipeError, TreeError) as e:
            return RoleCall(self._verdict(1, 2, 1, 1, "reject", f"The recipe does not apply to its parent: {e}",
                                          ["Propose an edit of a unit the parent has."], ctx))
        novelty, soundness, gain = PRIORS.get(proposal.recipe["operator"], (3, 3, 3))
        notes, suggestions = [], []
        fingerprint = child.fingerprint()
        known = set(ctx.known_fingerprints) | {t.fingerprint() for t in parents.values()}
        if fingerprint in known:
            return RoleCall(self._verdict(1, soundness, 3, 1, "reject",
                                          f"Duplicate: the design's fingerprint {fingerprint[:12]} is already in the "
                                          f"archive (or is a parent's); it would teach us nothing new.",
                                          ["Choose a different edit: another unit, donor or value."], ctx))
        similarity = _max_similarity(ctx.nearest)
        if similarity >= 0.9:
            novelty -= 2 if similarity >= 0.97 else 1
            notes.append(f"The nearest earlier design is {similarity:.2f} similar, so novelty is reduced.")
            suggestions.append("Make the change larger than the nearest design's, or target another unit.")
        else:
            notes.append(f"Fingerprint {fingerprint[:12]} is new among {len(known)} known designs.")
        feasibility, sentence = self._measure(child, base)
        notes.append(sentence)
        if feasibility <= 3:
            suggestions.append("Reduce the compute per token: a cheaper donor unit or a smaller hyperparameter.")
        overall = (novelty + soundness + feasibility + gain) / 4
        verdict = "accept" if overall >= self.threshold else "revise"
        if feasibility == 1:
            verdict = "reject"
        return RoleCall(self._verdict(novelty, soundness, feasibility, gain, verdict, " ".join(notes),
                                      suggestions, ctx))

    def _measure(self, child: UnitTree, base: UnitTree | None) -> tuple[int, str]:
        """Feasibility from parameters and FLOPs measured in the sandbox, against the parent (or GPT-2)."""
        if not self.measure:
            return 4, "Feasibility not measured (measure=False): the edit reuses library units of known cost."
        from designs.measure import MeasureError
        from verifier.sandbox import measure_isolated

        gpt2 = load_seed("gpt2")
        reference = base or gpt2
        trees = [child, reference] + ([gpt2] if reference.fingerprint() != gpt2.fingerprint() else [])
        jobs = [{"tree": t.to_dict(), "sizes": [list(MEASURE_SIZE)], "flops_seq_len": 128} for t in trees]
        try:
            replies = measure_isolated(jobs, timeout=self.measure_timeout)
        except MeasureError as e:
            return 3, f"Feasibility not measured: {e}."
        if not replies[0].get("ok"):
            return 1, f"The design does not build at d_model {MEASURE_SIZE[0]}: {replies[0].get('error')}."
        if not replies[1].get("ok"):
            return 3, f"The reference {reference.name} could not be measured: {replies[1].get('error')}."
        gpt2_size = replies[2] if len(replies) > 2 else replies[1]
        return _feasibility({"child": replies[0]["sizes"][0], "reference": replies[1]["sizes"][0],
                             "reference_name": reference.name,
                             "gpt2": gpt2_size["sizes"][0] if gpt2_size.get("ok") else None})

    def _verdict(self, novelty, soundness, feasibility, gain, verdict, summary, suggestions, ctx) -> Review:
        ratings = Ratings(novelty=_clip(novelty), soundness=_clip(soundness), feasibility=_clip(feasibility),
                          expected_gain=_clip(gain))
        overall = (ratings.novelty + ratings.soundness + ratings.feasibility + ratings.expected_gain) / 4
        if verdict == "reject":
            overall = min(overall, 2.0)
        return Review(ratings=ratings, overall=round(overall, 2), verdict=verdict, summary=summary,
                      suggestions=suggestions, nearest=[line.strip()[:120] for line in ctx.nearest[:5]])

    # ---- planner

    def plan(self, ctx: PlanContext) -> RoleCall[Plan]:
        recipe = ctx.proposal.recipe
        if not recipe:
            return RoleCall(None, error="the symbolic planner needs a proposal with a recipe")
        try:
            parents = {p.name: UnitTree.from_dict(p.tree, f"parent {p.name}") for p in ctx.parents}
            apply_recipe(recipe, parents.get(recipe["base"]) if recipe.get("base") else None)
        except (RecipeError, TreeError, KeyError) as e:
            return RoleCall(None, error=f"the proposal's recipe does not apply: {e}")
        tasks = [UnitTask(unit=e["unit"], action=e["action"], source=_source(e), description=_describe(e),
                          children=list(e["children"])) for e in recipe["units"]]
        notes = (f"Operator {recipe['operator']}: the units are assembled from the unit library and the "
                 f"symbolic designer's templates; units outside {recipe.get('selected') or 'the new root'}'s "
                 f"subtree stay as in {recipe.get('base') or 'no parent (scratch)'}.")
        return RoleCall(Plan(tasks=tasks, notes=notes))

    # ---- coder

    def implement(self, ctx: CoderContext) -> RoleCall[UnitCode]:
        unit = ctx.task.unit
        if unit in ctx.protected:
            return RoleCall(None, error=f"unit {unit} is protected in this session; the recipe may not change it")
        recipe = ctx.proposal.recipe
        if not recipe:
            return RoleCall(None, error="the symbolic coder needs a proposal with a recipe")
        if ctx.attempt > 1 and not _worth_retrying(ctx.feedback):
            return RoleCall(None, error=f"unit {unit}: the symbolic coder assembles library code deterministically "
                                        f"and the failure is not transient, so a retry would repeat it")
        try:
            code = unit_code(recipe, unit, UnitTree.from_dict(ctx.tree, "working tree"))
        except (RecipeError, TreeError) as e:
            return RoleCall(None, error=str(e))
        if ctx.attempt > 1:
            code.rationale += f"; attempt {ctx.attempt} repeats the code after a transient check failure"
        return RoleCall(code)

    # ---- observer

    def observe(self, ctx: ObserverContext) -> RoleCall[Observation]:
        errors, warnings = _section(ctx.report, "Errors"), _section(ctx.report, "Warnings")
        if ctx.report_ok:
            rating = 5.0 if not warnings else 4.0
            notes = (f"{ctx.code.unit} passes the checks" + (f" with {len(warnings)} warning(s): "
                                                             + "; ".join(warnings[:3]) if warnings else "")
                     + f". It is {ctx.code.rationale or 'library code'}.")
            return RoleCall(Observation(unit=ctx.code.unit, rating=rating, accept=True, notes=notes))
        found = errors or [ln.strip() for ln in ctx.report.splitlines() if ln.strip()][:5]
        notes = f"{ctx.code.unit} fails the checks: " + "; ".join(found[:5])
        return RoleCall(Observation(unit=ctx.code.unit, rating=1.0 if len(errors) > 2 else 2.0, accept=False,
                                    notes=notes[:2000], suggestions=[f[:200] for f in found[:3]]))


def _section(report: str, title: str) -> list[str]:
    """The findings ("- **check** ...") listed under one `## title` heading of a check report's markdown."""
    items, inside = [], False
    for line in report.splitlines():
        if line.startswith("## "):
            inside = line[3:].strip() == title
        elif inside and line.startswith("- **"):
            items.append(line.strip())
    return items


def _clip(rating) -> int:
    return int(min(5, max(1, rating)))


def _revision_note(ctx: ProposalContext) -> str:
    if not ctx.previous:
        return ""
    said = "; ".join(r.summary for r in ctx.reviews)[:400]
    return f"Revised after review: the earlier proposal \"{ctx.previous.title}\" was judged: {said} This one differs."


def _source(entry: dict) -> str:
    kind, _, rest = entry["source"].partition(":")
    if kind == "library":
        return f"{HOME_SEED.get(rest, 'library')}:{rest}"
    return f"{kind}:{rest}" if kind == "template" else rest


def _describe(entry: dict) -> str:
    action = {"modify": "Rewrite", "new": "Write", "reuse": "Reuse"}[entry["action"]]
    children = f"; children: {', '.join(entry['children'])}" if entry["children"] else ""
    return f"{action} {entry['unit']}: {entry['desc']}{children}."


def _worth_retrying(feedback: list[str]) -> bool:
    """A retry of identical code helps only when the failure may be the machine's (a timeout, load)."""
    last = feedback[-1] if feedback else ""
    return any(status in last for status in RETRY_STATUSES)

