"""The symbolic designer's edits: unit roles, renaming, recipes, and replaying a recipe on a tree.

A *recipe* is the machine-readable form of a symbolic proposal (Proposal.recipe): the
operator, the parent it edits and, in the planner's order, one entry per unit to
write, each naming where its code comes from (`library:<unit>`, `template:<unit>`
under agents/units, or `design:<parent>:<unit>` with the code inline) and the names
to rename in it. Everything the planner and coder need is in the recipe, so a
resumed session recomputes its plan and code from the checkpointed proposal alone.

    edits = candidate_edits("mutation", [load_seed("gpt2")])
    recipe = build_recipe(edits[0], [load_seed("gpt2")])
    child = apply_recipe(recipe, load_seed("gpt2"))      # the same edits the design graph makes

Unit names are fixed by the code that calls them, and a mutation leaves the caller
alone, so an edited unit keeps its name (a "slot": the MHA slot of gpt2 may come to
hold gated linear attention); what it holds is read back from its docstring (`label`).
"""

from __future__ import annotations

import ast
import copy
import hashlib
import io
import json
import re
import tokenize
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from agents.schemas import ChildDecl, UnitCode
from designs.gau import UnitDecl, UnitSpec
from designs.seeds import library_units, load_seed, seed_names, unit_doc
from designs.tree import TreeError, UnitTree, normalize_code

TEMPLATES_DIR = Path(__file__).parent / "units"
RECIPE_VERSION = 1

# What each library unit is for; only units of the same role replace one another.
MIXERS = ("MHA", "GatedLinearAttention", "MultiScaleRetention", "HyenaOperator", "Mamba2Mixer",
          "DeltaNetMixer", "GatedDeltaNetMixer", "RWKV6TimeMix", "TTTLinear")
FFNS = ("GeluMLP", "SwiGLU", "RWKV6ChannelMix")
NORMS = ("LayerNorm", "RMSNorm")
ROLE = {**{u: "mixer" for u in MIXERS}, **{u: "ffn" for u in FFNS}, **{u: "norm" for u in NORMS}}
# The seed whose hyperparameters a unit brings when it is swapped in.
HOME_SEED = {"MHA": "llama", "GatedLinearAttention": "gla", "MultiScaleRetention": "retnet",
             "HyenaOperator": "hyena", "Mamba2Mixer": "mamba2", "DeltaNetMixer": "deltanet",
             "GatedDeltaNetMixer": "gated_deltanet", "RWKV6TimeMix": "rwkv6", "TTTLinear": "ttt_linear",
             "GeluMLP": "gpt2", "SwiGLU": "llama", "RWKV6ChannelMix": "rwkv6", "LayerNorm": "gpt2",
             "RMSNorm": "llama"}
# Mixers that already convolve or gate their input/output: inserting one more adds little.
HAS_SHORT_CONV = {"HyenaOperator", "Mamba2Mixer", "DeltaNetMixer", "GatedDeltaNetMixer", "RWKV6TimeMix",
                  "TTTLinear"}
HAS_OUTPUT_GATE = {"GatedLinearAttention", "MultiScaleRetention", "Mamba2Mixer", "GatedDeltaNetMixer",
                   "RWKV6TimeMix", "HyenaOperator"}
# Hyperparameters the symbolic designer changes, with the values it tries (all valid at d_model 64).
HYPER_VALUES = {
    "n_heads": (2, 4, 8), "n_kv_heads": (None, 1, 2), "gla_heads": (2, 4, 8), "gla_expand_v": (1.0, 2.0),
    "gla_gate_low_rank": (16, 32), "retnet_heads": (2, 4, 8), "retnet_expand_v": (1.0, 2.0),
    "hyena_order": (2, 3), "hyena_short_conv_size": (3, 4), "mamba2_state_size": (16, 32, 64),
    "mamba2_expand": (1, 2), "mamba2_n_heads": (2, 4, 8), "deltanet_heads": (2, 4, 8),
    "deltanet_conv_size": (2, 4), "gdn_heads": (1, 2, 4), "gdn_expand_v": (1.0, 2.0),
    "rwkv6_n_heads": (2, 4, 8), "ttt_n_heads": (2, 4, 8), "ttt_mini_batch": (8, 16),
    "mlp_ratio": (2.0, 3.0, 4.0), "ffn_mult": (4 / 3, 2.0, 8 / 3), "rwkv6_ffn_mult": (2.5, 3.5),
    "short_conv_size": (2, 3, 4), "output_gate_bias": (0.0, 1.0), "hybrid_attn_every": (2, 3),
}
EVERY_VALUES = (2, 3)  # for the interleaving period keys the designer creates (<slot>_every)
SHORT = {"MHA": "Attn", "GatedLinearAttention": "GLA", "MultiScaleRetention": "Ret", "HyenaOperator": "Hyena",
         "Mamba2Mixer": "Mamba2", "DeltaNetMixer": "DeltaNet", "GatedDeltaNetMixer": "GDN",
         "RWKV6TimeMix": "RWKV6", "TTTLinear": "TTT", "GeluMLP": "Gelu", "SwiGLU": "SwiGLU",
         "RWKV6ChannelMix": "CMix", "LayerNorm": "LN", "RMSNorm": "RMS"}


class RecipeError(ValueError):
    """A recipe cannot be built or replayed: the message says which unit and why."""


# ---------------------------------------------------------------- code of units


@lru_cache(maxsize=None)
def template_code(name: str) -> str:
    path = TEMPLATES_DIR / f"{name}.py"
    if not path.exists():
        raise RecipeError(f"no template {name!r} in {TEMPLATES_DIR}")
    return path.read_text()


@lru_cache(maxsize=None)
def library_args(unit: str) -> dict:
    """The hyperparameters a library unit has in its home seed."""
    return copy.deepcopy(load_seed(HOME_SEED[unit]).units[unit].args) if unit in HOME_SEED else {}


def snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def rename_code(code: str, mapping: dict[str, str]) -> str:
    """Rename identifiers (not attributes such as `nn.LayerNorm`, not strings) keeping the formatting."""
    edits: dict[int, list[tuple[int, int, str]]] = {}
    previous = None
    for tok in tokenize.generate_tokens(io.StringIO(code).readline):
        if tok.type == tokenize.NAME and tok.string in mapping and not (previous and previous.string == "."):
            edits.setdefault(tok.start[0], []).append((tok.start[1], tok.end[1], mapping[tok.string]))
        if tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT):
            previous = tok
    lines = code.splitlines(keepends=True)
    for row, spans in edits.items():
        line = lines[row - 1]
        for start, end, new in sorted(spans, reverse=True):
            line = line[:start] + new + line[end:]
        lines[row - 1] = line
    return "".join(lines)


def unit_mapping(code: str, old: str, new: str, children: dict[str, str] | None = None) -> dict[str, str]:
    """The renames that move a unit's code to a new class name: the class, its tests, its children.

    Test functions are renamed too, so two units holding the same library code under
    different names do not define the same top-level test twice.
    """
    mapping = {k: v for k, v in (children or {}).items() if k != v}
    if old != new:
        mapping[old] = new
        for node in ast.parse(code).body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                mapping[node.name] = f"{node.name.split('__')[0]}__{snake(new)}"
    return mapping


@lru_cache(maxsize=None)
def _known_docs() -> dict[str, str]:
    """First docstring line -> library or template unit: how a unit's content is recognized."""
    known = {}
    for name, code in library_units().items():
        known.setdefault(unit_doc(name, code).split("\n")[0], name)
    for path in sorted(TEMPLATES_DIR.glob("[A-Z]*.py")):
        known.setdefault(unit_doc(path.stem, path.read_text()).split("\n")[0], path.stem)
    return known


def label(tree: UnitTree, name: str) -> str:
    """What a unit holds: the library or template unit its code comes from, else its own name."""
    unit = tree.units.get(name)
    if unit is None:
        return name
    try:
        first = unit_doc(name, unit.code).split("\n")[0]
    except TreeError:
        return name
    return _known_docs().get(first, name) if first else name


def slots(tree: UnitTree, role: str | None = None) -> list[str]:
    """Units a block calls by a library name of a known role (the places an edit can go)."""
    found = [n for n in tree.reachable() if n in tree.units and n != tree.root and n in ROLE]
    return [n for n in found if role is None or ROLE[n] == role]


def outside(tree: UnitTree, slot: str | None) -> set[str]:
    """Units the root reaches without passing through `slot` (what an edit of the slot keeps)."""
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen or name == slot:
            return
        seen.add(name)
        for child in tree.units[name].children if name in tree.units else []:
            visit(child)

    visit(tree.root)
    return seen


def subtree_order(tree: UnitTree, name: str) -> list[str]:
    order: list[str] = []

    def visit(n: str) -> None:
        if n in order or n not in tree.units:
            return
        order.append(n)
        for child in tree.units[n].children:
            visit(child)

    visit(name)
    return order


# ---------------------------------------------------------------- building recipes


@dataclass
class Edit:
    """One candidate edit before it is built: the operator, its title, and what it needs."""

    operator: str
    title: str
    selected: str | None
    params: dict = field(default_factory=dict)


class _Builder:
    """Collects a recipe's entries with fresh unit names and hyperparameter keys."""

    def __init__(self, base: UnitTree | None, slot: str | None):
        self.base = base
        self.all_names = set(base.units) | set(base.declares) if base else set()
        self.kept = outside(base, slot) if base else set()
        self.assigned: set[str] = set()
        self.arg_keys = {k for u in base.units.values() for k in u.args} if base else set()
        self.entries: list[dict] = []

    def fresh(self, name: str, avoid_all: bool = True) -> str:
        """`name`, or `name2`, `name3`, ...: unused in the design (avoid_all) or unused by what the edit keeps."""
        taken = self.assigned | (self.all_names | set(library_units()) if avoid_all else self.kept)
        candidate, i = name, 2
        while candidate in taken:
            candidate, i = f"{name}{i}", i + 1
        self.assigned.add(candidate)
        return candidate

    def fresh_key(self, key: str) -> str:
        candidate, i = key, 2
        while candidate in self.arg_keys:
            candidate, i = f"{key}_{i}", i + 1
        self.arg_keys.add(candidate)
        return candidate

    def add(self, unit: str, action: str, source: str, mapping: dict, args: dict, children: list[str],
            desc: str, code: str | None = None) -> None:
        entry = {"unit": unit, "action": action, "source": source, "renames": mapping, "args": args,
                 "children": children, "desc": desc}
        if code is not None:
            entry["code"] = code
        self.entries.append(entry)

    def library(self, lib: str, unit: str, action: str) -> None:
        code = library_units()[lib]
        desc = f"{lib} from the {HOME_SEED.get(lib, 'library')} seed" + (f", as {unit}" if unit != lib else "")
        mapping = unit_mapping(code, lib, unit)
        self.add(unit, _copy_action(action, mapping), f"library:{lib}", mapping, library_args(lib), [], desc)

    def template(self, name: str, unit: str, action: str, children: dict[str, str], args: dict,
                 desc: str, keys: dict[str, str] | None = None) -> None:
        """A template as unit `unit`: placeholders renamed to children, template arg names to `keys`."""
        code = template_code(name)
        self.add(unit, action, f"template:{name}", unit_mapping(code, name, unit, {**children, **(keys or {})}),
                 args, list(dict.fromkeys(children.values())), desc)

    def transplant(self, src: UnitTree, name: str, new_name: str, action: str) -> None:
        """Entries that rebuild `src`'s subtree at `name` under `new_name` (a crossover graft, a wrapped mixer)."""
        names: dict[str, str] = {}
        shared: set[str] = set()
        for u in subtree_order(src, name):
            if u == name:
                names[u] = new_name
            elif self.base and u in self.kept and _same_unit(self.base.units.get(u), src.units[u]):
                names[u] = u
                shared.add(u)
            else:
                names[u] = self.fresh(u, avoid_all=False)
        for u, new in names.items():
            if u in shared:
                continue
            unit = src.units[u]
            mapping = unit_mapping(unit.code, u, new, {c: names.get(c, c) for c in unit.children})
            lib_code = library_units().get(u)
            same_as_library = lib_code is not None and normalize_code(lib_code) == normalize_code(unit.code)
            source = f"library:{u}" if same_as_library else f"design:{src.name}:{u}"
            self.add(new, _copy_action(action if u == name else "reuse", mapping), source, mapping,
                     copy.deepcopy(unit.args),
                     [names.get(c, c) for c in unit.children], unit.desc or label(src, u),
                     None if same_as_library else unit.code)


def _copy_action(action: str, mapping: dict) -> str:
    """Reuse is for code taken as is (the design graph may graft it from its source); a renamed copy is new."""
    return "new" if action == "reuse" and mapping else action


def _same_unit(a, b) -> bool:
    return a is not None and normalize_code(a.code) == normalize_code(b.code) and a.args == b.args


def _inner_name(b: _Builder, tree: UnitTree, slot: str) -> str:
    """A name for a slot's current content once a wrapper takes the slot: its library name when free."""
    content = label(tree, slot)
    if content in library_units() and content not in b.all_names | b.assigned:
        b.assigned.add(content)
        return content
    return b.fresh(f"{slot}Core")


def _donor_name(b: _Builder, donor: str) -> str:
    if donor not in b.all_names | b.assigned:
        b.assigned.add(donor)
        return donor
    return b.fresh(donor)


def _build_entries(edit: Edit, parents: list[UnitTree]) -> tuple[_Builder, str]:
    p, op = edit.params, edit.operator
    if op == "scratch":
        b = _Builder(None, None)
        root = b.fresh("".join(SHORT[m] for m in p["mixers"]) + SHORT[p["ffn"]] + "Block")
        mixer = p["mixers"][0] if len(p["mixers"]) == 1 else "InterleavedMixer"
        b.template("PreNormBlock", root, "new", {"BlockNorm": p["norm"], "BlockMixer": mixer, "BlockFFN": p["ffn"]},
                   {}, f"pre-norm residual block: {p['norm']}, {' / '.join(p['mixers'])}, {p['ffn']}")
        b.assigned |= {p["norm"], p["ffn"], *p["mixers"]}
        b.library(p["norm"], p["norm"], "reuse")
        if len(p["mixers"]) == 2:
            key = b.fresh_key("mixer_every")
            b.template("LayerRouter", mixer, "new", {"MixerA": p["mixers"][0], "MixerB": p["mixers"][1]},
                       {key: 2}, f"{p['mixers'][0]} and {p['mixers'][1]} interleaved by layer", {"router_every": key})
            b.library(p["mixers"][0], p["mixers"][0], "reuse")
            b.library(p["mixers"][1], p["mixers"][1], "reuse")
        else:
            b.library(mixer, mixer, "reuse")
        b.library(p["ffn"], p["ffn"], "reuse")
        return b, root
    base = parents[0]
    slot = edit.selected
    b = _Builder(base, slot)
    if op == "swap":
        b.library(p["donor"], slot, "modify")
    elif op in ("insert_conv", "insert_gate"):
        inner = _inner_name(b, base, slot)
        if op == "insert_conv":
            b.template("ConvMixer", slot, "modify", {"InnerMixer": inner}, {"short_conv_size": 4},
                       f"{label(base, slot)} behind a short causal convolution")
        else:
            b.template("GatedMixer", slot, "modify", {"InnerMixer": inner}, {"output_gate_bias": 1.0},
                       f"{label(base, slot)} with a sigmoid output gate")
        b.transplant(base, slot, inner, "reuse")
    elif op in ("interleave", "cross_interleave"):
        donor_tree = parents[1] if op == "cross_interleave" else None
        inner = _inner_name(b, base, slot)
        other = label(donor_tree, p["donor_slot"]) if donor_tree else p["donor"]
        second = _donor_name(b, other if other in library_units() else f"{p['donor_slot']}Core")
        key = b.fresh_key(f"{snake(slot)}_every")
        b.template("LayerRouter", slot, "modify", {"MixerA": inner, "MixerB": second},
                   {key: p.get("every", 2)}, f"{label(base, slot)} and {other} interleaved by layer",
                   {"router_every": key})
        b.transplant(base, slot, inner, "reuse")
        if donor_tree:
            b.transplant(donor_tree, p["donor_slot"], second, "reuse")
        else:
            b.library(p["donor"], second, "reuse")
    elif op == "graft":
        b.transplant(parents[1], p["donor_slot"], slot, "modify")
    elif op == "hyper":
        unit = base.units[slot]
        lib_code = library_units().get(slot)
        inline = lib_code is None or normalize_code(lib_code) != normalize_code(unit.code)
        b.add(slot, "modify", f"design:{base.name}:{slot}" if inline else f"library:{slot}", {},
              {**unit.args, p["key"]: p["value"]}, list(unit.children),
              unit.desc or label(base, slot), unit.code if inline else None)
    else:
        raise RecipeError(f"unknown operator {op!r}")
    return b, base.root


def build_recipe(edit: Edit, parents: list[UnitTree]) -> dict:
    """The recipe of an edit: checked by replaying it, so a recipe that cannot apply is never proposed."""
    b, root = _build_entries(edit, parents)
    digest = hashlib.sha256(json.dumps([edit.operator, edit.title], sort_keys=True).encode()).hexdigest()[:8]
    base = parents[0].name if parents and edit.operator != "scratch" else None
    recipe = {"version": RECIPE_VERSION, "operator": edit.operator, "title": edit.title,
              "parents": [t.name for t in parents] if base else [], "base": base,
              "name": f"{base or 'scratch'}-{edit.operator.replace('_', '-')}-{digest}", "root": root,
              "selected": edit.selected, "params": copy.deepcopy(edit.params), "units": b.entries}
    apply_recipe(recipe, parents[0] if base else None)
    return recipe


# ---------------------------------------------------------------- candidate edits


def _fmt(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _owned_keys(tree: UnitTree) -> list[tuple[str, str]]:
    """(unit, key) of hyperparameters set by exactly one unit (a change of a shared key may not take effect)."""
    owners: dict[str, list[str]] = {}
    for name in tree.reachable():
        for key in tree.units[name].args if name in tree.units else []:
            owners.setdefault(key, []).append(name)
    return [(units[0], key) for key, units in owners.items() if len(units) == 1]


def _hyper_values(key: str) -> tuple:
    if key in HYPER_VALUES:
        return HYPER_VALUES[key]
    return EVERY_VALUES if key.endswith("_every") else ()


def mutation_edits(tree: UnitTree, donors: tuple[str, ...]) -> list[Edit]:
    edits = []
    mixers_here = {label(tree, s) for s in slots(tree, "mixer")}
    for slot in slots(tree):
        role, content = ROLE[slot], label(tree, slot)
        for donor in donors:
            if ROLE.get(donor) == role and donor != content and not (role == "mixer" and donor in mixers_here):
                edits.append(Edit("swap", f"Replace {content} with {donor} in {tree.name}" +
                                  (f" (the {slot} slot)" if slot != content else ""), slot, {"donor": donor}))
        if role != "mixer":
            continue
        if content in library_units() and content not in HAS_SHORT_CONV:
            edits.append(Edit("insert_conv", f"Short causal convolution before {content} in {tree.name}", slot))
        if content in library_units() and content not in HAS_OUTPUT_GATE:
            edits.append(Edit("insert_gate", f"Sigmoid output gate on {content} in {tree.name}", slot))
        for donor in donors:
            if ROLE.get(donor) == "mixer" and donor not in mixers_here:
                edits.append(Edit("interleave", f"Interleave {content} with {donor} across the layers of "
                                  f"{tree.name}", slot, {"donor": donor}))
    for unit, key in _owned_keys(tree):
        current = tree.units[unit].args[key]
        for value in _hyper_values(key):
            if value != current and not (isinstance(value, float) and isinstance(current, float)
                                         and abs(value - current) < 1e-9):
                edits.append(Edit("hyper", f"{tree.name}: {key} {_fmt(current)} -> {_fmt(value)} in {unit}", unit,
                                  {"key": key, "value": value, "old": current}))
    return edits


def crossover_edits(a: UnitTree, b: UnitTree) -> list[Edit]:
    edits = []
    for slot in slots(a):
        for other in slots(b, ROLE[slot]):
            la, lb = label(a, slot), label(b, other)
            if normalize_code(a.units[slot].code) == normalize_code(b.units[other].code) or la == lb:
                continue
            edits.append(Edit("graft", f"Crossover: {b.name}'s {lb} in place of {a.name}'s {la}", slot,
                              {"donor_slot": other}))
            if ROLE[slot] == "mixer":
                edits.append(Edit("cross_interleave", f"Crossover: interleave {a.name}'s {la} with {b.name}'s {lb} "
                                  "across layers", slot, {"donor_slot": other}))
    return edits


def _seed_combinations() -> set[tuple]:
    combos = set()
    for name in seed_names():
        tree = load_seed(name)
        roles = {r: tuple(sorted(label(tree, s) for s in slots(tree, r))) for r in ("norm", "mixer", "ffn")}
        combos.add((roles["norm"], roles["mixer"], roles["ffn"]))
    return combos


def scratch_edits(donors: tuple[str, ...]) -> list[Edit]:
    """Pre-norm blocks of one norm, one or two interleaved mixers and one FFN, minus the seeds' own."""
    seeds = _seed_combinations()
    mixers = [m for m in MIXERS if m in donors]
    choices = [(m,) for m in mixers] + [(a, b) for i, a in enumerate(mixers) for b in mixers[i + 1:]]
    edits = []
    for norm in (n for n in NORMS if n in donors):
        for ffn in (f for f in FFNS if f in donors):
            for mix in choices:
                if ((norm,), tuple(sorted(mix)), (ffn,)) in seeds:
                    continue
                edits.append(Edit("scratch", f"From scratch: {norm} + {' / '.join(mix)} + {ffn}", None,
                                  {"norm": norm, "mixers": list(mix), "ffn": ffn}))
    return edits


def candidate_edits(mode: str, parents: list[UnitTree], donors: tuple[str, ...] | None = None) -> list[Edit]:
    """Every edit the symbolic designer could propose for this mode and these parents."""
    donors = tuple(donors or ROLE)
    if mode == "scratch":
        return scratch_edits(donors)
    if mode == "crossover":
        if len(parents) < 2:
            raise RecipeError("crossover needs two parents")
        return crossover_edits(parents[0], parents[1])
    if mode == "mutation":
        if not parents:
            raise RecipeError("mutation needs a parent")
        return mutation_edits(parents[0], donors)
    raise RecipeError(f"unknown mode {mode!r}: mutation, crossover or scratch")


# ---------------------------------------------------------------- replaying a recipe


def entry_of(recipe: dict, unit: str) -> dict:
    for entry in recipe.get("units", []):
        if entry["unit"] == unit:
            return entry
    raise RecipeError(f"the recipe has no unit {unit!r} (units: {', '.join(e['unit'] for e in recipe['units'])})")


def entry_code(entry: dict) -> str:
    kind, _, rest = entry["source"].partition(":")
    if kind == "library":
        code = library_units().get(rest)
        if code is None:
            raise RecipeError(f"unit {entry['unit']}: {rest!r} is not in the unit library")
    elif kind == "template":
        code = template_code(rest)
    elif kind == "design" and "code" in entry:
        code = entry["code"]
    else:
        raise RecipeError(f"unit {entry['unit']}: cannot read source {entry['source']!r}")
    return rename_code(code, entry.get("renames", {}))


def unit_code(recipe: dict, unit: str, tree: UnitTree) -> UnitCode:
    """The coder's output for one unit of a recipe, given the working tree it will go into."""
    entry = entry_of(recipe, unit)
    code = entry_code(entry)
    new_children = [ChildDecl(name=c, requirements=entry_of(recipe, c)["desc"])
                    for c in entry["children"] if c not in tree.units]
    kind, _, origin = entry["source"].partition(":")
    rationale = {"library": f"library unit {origin}", "template": f"the symbolic designer's template {origin}",
                 "design": f"unit {origin.split(':')[-1]} of design {origin.split(':')[0]}"}[kind]
    if entry.get("renames", {}).get(origin.split(":")[-1]):
        rationale += f", class renamed to {unit}"
    return UnitCode(unit=unit, code=code, new_children=new_children, args=copy.deepcopy(entry["args"]),
                    document=unit_doc(unit, code) or entry["desc"], rationale=f"{entry['action']}: {rationale}")


def apply_unit_code(tree: UnitTree, code: UnitCode, desc: str | None = None) -> UnitTree:
    """Put one unit's code into a working tree (UnitTree.replace), declaring its new children."""
    declares = {c.name: UnitDecl(c.name, c.requirements, list(c.inputs), list(c.outputs)) for c in code.new_children}
    return tree.replace(code.unit, code.code, args=code.args, spec=UnitSpec(code.unit, code.document),
                        desc=desc, declares=declares)


def initial_tree(recipe: dict, parent: UnitTree | None) -> UnitTree:
    """The working tree before the first unit: the parent renamed, or (scratch) a declared root."""
    meta = {"parents": list(recipe.get("parents", [])), "operator": recipe["operator"], "proposal": recipe["title"]}
    if recipe.get("base") is None:
        root = recipe["root"]
        return UnitTree(recipe["name"], root, {}, {root: UnitDecl(root, entry_of(recipe, root)["desc"])}, meta)
    if parent is None or parent.name != recipe["base"]:
        got = parent.name if parent else "none"
        raise RecipeError(f"the recipe edits design {recipe['base']!r}, got {got!r}")
    tree = copy.deepcopy(parent)
    tree.name, tree.meta = recipe["name"], {**{k: v for k, v in parent.meta.items() if k != "seed"}, **meta}
    return tree


def apply_recipe(recipe: dict, parent: UnitTree | None) -> UnitTree:
    """The design a recipe makes from its parent (None for scratch): the units replaced one by one, in order."""
    tree = initial_tree(recipe, parent)
    try:
        for entry in recipe["units"]:
            tree = apply_unit_code(tree, unit_code(recipe, entry["unit"], tree), desc=entry["desc"])
        return tree.validate()
    except TreeError as e:
        raise RecipeError(f"recipe {recipe.get('title', '?')}: {e}") from None
