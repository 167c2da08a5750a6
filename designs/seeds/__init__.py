"""The seed library: human designs as unit trees.

`units/` holds the unit library, one GAU per file; its class docstring is the unit's
documentation for agents. Each `<seed>.json` names a root unit, the args and a
one-line description of each unit it uses, and the paper it comes from. A seed's
tree is every unit reachable from its root; children are read from the code.
"""

from __future__ import annotations

import ast
import json
from functools import lru_cache
from pathlib import Path

from designs.gau import UnitDecl, UnitSpec
from designs.tree import TreeError, Unit, UnitTree, called_names, parse_unit_code

SEEDS_DIR = Path(__file__).parent
UNITS_DIR = SEEDS_DIR / "units"


@lru_cache(maxsize=None)
def library_units() -> dict[str, str]:
    """The unit library: unit name -> code."""
    return {p.stem: p.read_text() for p in sorted(UNITS_DIR.glob("*.py"))}


def unit_namespace(name: str) -> dict:
    """The globals of one library unit's code, executed on its own (trusted seed code only).

    Tests use it to reach a unit's core op functions (say, a chunked and a recurrent
    form) without building a model. Children are looked up only when the unit is built.
    """
    namespace: dict = {"__name__": f"genesys_unit_{name}"}
    exec(compile(library_units()[name], str(UNITS_DIR / f"{name}.py"), "exec"), namespace)
    return namespace


def seed_names() -> list[str]:
    return sorted(p.stem for p in SEEDS_DIR.glob("*.json"))


def unit_doc(name: str, code: str) -> str:
    """The docstring of a unit's class: what it computes and its hyperparameters."""
    module = parse_unit_code(name, code)
    cls = next((n for n in module.body if isinstance(n, ast.ClassDef) and n.name == name), None)
    return ast.get_docstring(cls) or "" if cls else ""


def load_seed(name: str) -> UnitTree:
    """The unit tree of a seed design, with its paper and description in `meta`."""
    path = SEEDS_DIR / f"{name}.json"
    if not path.exists():
        raise KeyError(f"no seed named {name!r}; seeds: {', '.join(seed_names())}")
    info = json.loads(path.read_text())
    library = library_units()
    units, declares = {}, {}
    pending = [info["root"]]
    while pending:
        uname = pending.pop()
        if uname in units:
            continue
        if uname not in library:
            raise TreeError(f"seed {name}: unit {uname!r} is not in the unit library {UNITS_DIR}")
        code = library[uname]
        unit_info = info["units"].get(uname, {})
        children = sorted(called_names(parse_unit_code(uname, code)) & (set(library) - {uname}))
        units[uname] = Unit(uname, code, UnitSpec(uname, unit_doc(uname, code)), children,
                            dict(unit_info.get("args", {})), unit_info.get("desc", ""))
        for child in children:
            declares[child] = UnitDecl(child, info["units"].get(child, {}).get("desc", ""))
        pending += children
    meta = {k: info[k] for k in ("family", "description", "paper", "related") if k in info}
    meta["seed"] = True
    return UnitTree(info["name"], info["root"], units, declares, meta).validate()
