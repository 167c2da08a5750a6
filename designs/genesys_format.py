"""Designs in the Genesys paper's file layout (`implementation.json`), in and out.

The Genesys project stores a design as

    {"status": "implemented",
     "implementation": {"name", "root", "units": {NAME: node}, "declares": {NAME: json},
                        "proposal", "proposal_traces", "review", "rating", "suggestions"},
     "history": [attempt, ...]}

where a unit node is {"spec": json, "code", "args", "desc", "children", "gautests",
"review", "rating", "suggestions", "design_traces", "requirements", "reuse_from"},
and `spec` and each `declares[NAME]` are JSON strings (pydantic's compact dump).

`from_genesys` reads that into a UnitTree: spec, code, children, args, desc and
gautests become the Unit's fields; everything else (reviews, ratings, proposal,
status, history, ...) is kept in `tree.meta["genesys"]`, so that `to_genesys`
writes back exactly the dict it read:

    meta["genesys"] = {"status", "history",                        # the file's fields
                       "proposal", "proposal_traces", "review", ...,  # the tree's fields
                       "units": {NAME: {"review", "rating", "requirements", ...}},
                       "layout": key orders that differ from Genesys's own,
                       "verbatim": raw values our fields would spell differently}

Unit code keeps its import of `model_discovery.model.utils.modules` (our shim
package; composition drops it).

Genesys units end with `CHILDREN_DECLARATIONS = [UnitDecl(...)]`, which repeats
`declares`. Every unit defines it differently, which composition refuses (one
top-level name, two definitions), so import strips it from the code and keeps the
original code for export.
"""

from __future__ import annotations

import ast
import copy
import json
from pathlib import Path
from typing import Callable, NamedTuple

from designs.gau import UnitDecl, UnitSpec
from designs.tree import TreeError, Unit, UnitTree

META_KEY = "genesys"  # tree.meta[META_KEY] holds what a UnitTree has no field for
IMPLEMENTED = "implemented"  # the only status a design may have to be imported

# Keys in the order Genesys writes them (Implementation, GAUTree and GAUNode.to_dict).
FILE_KEYS = ("status", "implementation", "history")
TREE_KEYS = ("name", "root", "units", "declares", "proposal", "proposal_traces", "review", "rating",
             "suggestions")
UNIT_KEYS = ("spec", "code", "args", "desc", "review", "rating", "children", "gautests", "suggestions",
             "design_traces", "requirements", "reuse_from")
# Values written for keys a design made here has no record of.
FILE_DEFAULTS = {"status": IMPLEMENTED, "history": []}
TREE_DEFAULTS = {"proposal": "", "proposal_traces": [], "review": None, "rating": None, "suggestions": None}

CHILDREN_DECLARATIONS = "CHILDREN_DECLARATIONS"


# ---------------------------------------------------------------- reading


def load_genesys(path: str | Path) -> UnitTree:
    """The design in a Genesys `implementation.json` file (errors name the file)."""
    path = Path(path)
    return from_genesys_json(path.read_text(), where=str(path))


def from_genesys_json(text: str, where: str = "FILE") -> UnitTree:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise TreeError(f"{where}: not valid JSON: line {e.lineno} column {e.colno}: {e.msg}") from None
    return from_genesys(data, where)


def from_genesys(data: dict, where: str = "FILE") -> UnitTree:
    """A complete, valid UnitTree from a Genesys design dict, or one TreeError line.

    `data` is the whole `implementation.json` object or its `implementation` (a
    bare tree). Only designs with status "implemented" and every declared child
    implemented are accepted: the rest cannot be composed.
    """
    if not isinstance(data, dict):
        raise TreeError(f"{where}: expected a JSON object, got {type(data).__name__}")
    data = copy.deepcopy(data)  # meta keeps parts of it: the caller's dict stays the caller's
    if "implementation" in data:
        record, tree_data, prefix = data, data["implementation"], "implementation"
        if not isinstance(tree_data, dict):
            raise _error(where, prefix, f"expected an object, got {type(tree_data).__name__}")
    elif "units" in data or "root" in data:
        record, tree_data, prefix = {}, data, ""
    else:
        raise TreeError(f"{where}: missing 'implementation' (neither a Genesys implementation.json "
                        f"nor a bare tree with 'root' and 'units')")
    meta: dict = {"units": {}, "layout": {}, "verbatim": {}}
    tree = _read_tree(tree_data, where, prefix, meta)
    if record:
        if list(record) != list(FILE_KEYS):
            meta["layout"]["file"] = list(record)
        meta.update({k: v for k, v in record.items() if k != "implementation"})
    _drop_empty(meta)
    tree.meta[META_KEY] = meta
    _check_complete(tree, record.get("status"), where)
    return tree


def _read_tree(data: dict, where: str, prefix: str, meta: dict) -> UnitTree:
    name = _need(data, "name", str, where, prefix)
    raw_root = _need(data, "root", (str, dict), where, prefix)
    raw_units = _need(data, "units", dict, where, prefix)
    raw_declares = _need(data, "declares", dict, where, prefix) if "declares" in data else {}
    root = _keep(meta["verbatim"], "root", raw_root, _ROOT_FIELD, None, where, _join(prefix, "root"))
    if root not in raw_units:
        raise _error(where, _join(prefix, "root"),
                     f"{root!r} is not among the units ({', '.join(raw_units) or 'none'})")
    units = {uname: _read_unit(uname, node, where, _join(prefix, f"units.{uname}"), meta)
             for uname, node in raw_units.items()}
    declares = {}
    for dname, raw in raw_declares.items():
        kept = meta["verbatim"].setdefault("declares", {})
        declares[dname] = _keep(kept, dname, raw, _DECL_FIELD, dname, where, _join(prefix, f"declares.{dname}"))
    if list(data) != list(TREE_KEYS):
        meta["layout"]["tree"] = list(data)
    meta.update({k: v for k, v in data.items() if k not in ("name", "root", "units", "declares")})
    return UnitTree(name, root, units, declares)


def _read_unit(name: str, node, where: str, place: str, meta: dict) -> Unit:
    if not isinstance(node, dict):
        raise _error(where, place, f"expected an object, got {type(node).__name__}")
    if "code" not in node:
        raise _error(where, place, "missing 'code'")
    kept = meta["verbatim"].setdefault("units", {}).setdefault(name, {})
    values = {key: _keep(kept, key, node.get(key, _ABSENT), field, name, where, f"{place}.{key}")
              for key, field in _UNIT_FIELDS.items()}
    if list(node) != list(UNIT_KEYS):
        meta["layout"].setdefault("units", {})[name] = list(node)
    meta["units"][name] = {k: v for k, v in node.items() if k not in _UNIT_FIELDS}
    return Unit(name, values["code"], values["spec"], values["children"], values["args"], values["desc"],
                values["gautests"])


def _check_complete(tree: UnitTree, status, where: str) -> None:
    if status not in (None, IMPLEMENTED):
        missing = tree.missing()
        todo = f"; declared children not implemented: {', '.join(missing)}" if missing else ""
        raise TreeError(f"{where}: design {tree.name} has status {status!r}, not {IMPLEMENTED!r}{todo}")
    try:
        tree.validate(complete=True)
    except TreeError as e:
        raise TreeError(f"{where}: {e}") from None


# ---------------------------------------------------------------- writing


def to_genesys(tree: UnitTree) -> dict:
    """The Genesys `implementation.json` dict of a tree: the inverse of `from_genesys`.

    A tree read by `from_genesys` and not changed since gives back the very dict it
    was read from; a changed field is written from the tree. A design made here gets
    status "implemented", an empty history and null reviews.
    """
    meta = tree.meta.get(META_KEY, {})
    layout, verbatim = meta.get("layout", {}), meta.get("verbatim", {})
    implementation = {}
    for key in layout.get("tree", TREE_KEYS):
        if key == "name":
            implementation[key] = tree.name
        elif key == "root":
            implementation[key] = _give(verbatim, "root", tree.root, _ROOT_FIELD, None)
        elif key == "units":
            implementation[key] = {n: _unit_node(tree, u, meta) for n, u in tree.units.items()}
        elif key == "declares":
            kept = verbatim.get("declares", {})
            implementation[key] = {n: _give(kept, n, d, _DECL_FIELD, n) for n, d in tree.declares.items()}
        else:
            implementation[key] = meta.get(key, TREE_DEFAULTS.get(key))
    record = {}
    for key in layout.get("file", FILE_KEYS):
        record[key] = implementation if key == "implementation" else meta.get(key, FILE_DEFAULTS.get(key))
    return copy.deepcopy(record)


def _unit_node(tree: UnitTree, unit: Unit, meta: dict) -> dict:
    extras = meta.get("units", {}).get(unit.name, {})
    kept = meta.get("verbatim", {}).get("units", {}).get(unit.name, {})
    keys = meta.get("layout", {}).get("units", {}).get(unit.name, UNIT_KEYS)
    ours = {"spec": unit.spec, "code": unit.code, "args": unit.args, "desc": unit.desc,
            "children": unit.children, "gautests": unit.tests}
    node = {}
    for key in [*keys, *(k for k in extras if k not in keys)]:
        if key in _UNIT_FIELDS:
            node[key] = _give(kept, key, ours[key], _UNIT_FIELDS[key], unit.name)
        else:
            node[key] = extras.get(key, _unit_default(tree, unit.name, key))
    return node


def _unit_default(tree: UnitTree, name: str, key: str):
    if key == "requirements" and name != tree.root:
        decl = tree.declares.get(name)
        return decl.requirements if decl else "N/A"
    return None


# ---------------------------------------------------------------- fields
#
# A field is read by `read(raw, name, where, place) -> our value` and written by
# `write(our value) -> Genesys value`. Where writing what was read would not give the
# raw value back (a spec in another JSON spelling, code with CHILDREN_DECLARATIONS,
# a null desc), the raw value is kept and written again while the value is unchanged.

_ABSENT = object()  # a key the unit node does not have


class _Field(NamedTuple):
    read: Callable  # (raw, unit name, where, place) -> our value; raises TreeError
    write: Callable  # our value -> Genesys value


def _keep(kept: dict, key: str, raw, field: _Field, name, where: str, place: str):
    value = field.read(raw, name, where, place)
    if raw is not _ABSENT and field.write(value) != raw:
        kept[key] = raw
    return value


def _give(kept: dict, key: str, value, field: _Field, name):
    if key in kept and field.read(kept[key], name, "", "") == value:
        return kept[key]
    return field.write(value)


def _compact_json(obj) -> str:
    # pydantic's model_dump_json, which Genesys uses: no spaces, non-ASCII kept as is.
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _json_object(raw, where: str, place: str) -> dict:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as e:
            raise _error(where, place, f"not valid JSON: line {e.lineno} column {e.colno}: {e.msg}") from None
    if not isinstance(raw, dict):
        raise _error(where, place, f"expected a JSON object, got {type(raw).__name__}")
    return raw


def _names(data: dict, key: str, default: list, where: str, place: str) -> list[str]:
    value = data.get(key, default)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _error(where, f"{place}.{key}", f"expected a list of strings, got {value!r}")
    return list(value)


def _text(data: dict, key: str, default: str, where: str, place: str) -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        raise _error(where, f"{place}.{key}", f"expected a string, got {type(value).__name__}")
    return value


def _read_spec(raw, name, where, place) -> UnitSpec:
    if raw is _ABSENT:
        return UnitSpec(name)
    data = _json_object(raw, where, place)
    doc_key = "document" if "document" in data or "docstring" not in data else "docstring"  # early Genesys
    return UnitSpec(_text(data, "unitname", name, where, place), _text(data, doc_key, "", where, place),
                    _names(data, "inputs", ["X"], where, place), _names(data, "outputs", ["Y"], where, place))


def _read_decl(raw, name, where, place) -> UnitDecl:
    data = _json_object(raw, where, place)
    return UnitDecl(_text(data, "unitname", name, where, place), _text(data, "requirements", "", where, place),
                    _names(data, "inputs", ["X"], where, place), _names(data, "outputs", ["Y"], where, place))


def _read_root(raw, name, where, place) -> str:
    if isinstance(raw, str):
        return raw
    # Older Genesys files hold the root node itself here.
    spec = raw.get("spec")
    found = raw.get("unitname") or raw.get("name") or (
        _json_object(spec, where, place + ".spec").get("unitname") if spec is not None else None)
    if not isinstance(found, str) or not found:
        raise _error(where, place, "a root object without a unit name (no unitname, name or spec.unitname)")
    return found


def _read_code(raw, name, where, place) -> str:
    module = _parse(raw, where, place)
    return _strip_children_declarations(raw, module)


def _read_tests(raw, name, where, place) -> dict[str, str]:
    tests = _typed(raw, dict, {}, where, place)
    for test_name, source in tests.items():
        _parse(source, where, f"{place}.{test_name}")
    return dict(tests)


def _read_args(raw, name, where, place) -> dict:
    return dict(_typed(raw, dict, {}, where, place))


def _read_children(raw, name, where, place) -> list[str]:
    children = _typed(raw, list, [], where, place)
    if not all(isinstance(c, str) for c in children):
        raise _error(where, place, f"expected a list of unit names, got {children!r}")
    return list(children)


def _typed(raw, kind: type, empty, where: str, place: str):
    """raw when it is a `kind`; empty when null or absent."""
    if raw is None or raw is _ABSENT:
        return empty
    if not isinstance(raw, kind):
        raise _error(where, place, f"expected {_kind_name(kind)}, got {type(raw).__name__}")
    return raw


def _parse(source, where: str, place: str) -> ast.Module:
    if not isinstance(source, str):
        raise _error(where, place, f"expected a string of Python code, got {type(source).__name__}")
    try:
        return ast.parse(source)
    except SyntaxError as e:
        line = (e.text or "").strip()
        raise _error(where, place, f"does not parse: line {e.lineno}: {e.msg}: {line!r}") from None


def _read_desc(raw, name, where, place) -> str:
    if raw is None or raw is _ABSENT:
        return ""
    if not isinstance(raw, str):
        raise _error(where, place, f"expected a string, got {type(raw).__name__}")
    return raw


_SPEC_FIELD = _Field(_read_spec, lambda spec: _compact_json(spec.to_dict()))
_DECL_FIELD = _Field(_read_decl, lambda decl: _compact_json(decl.to_dict()))
_ROOT_FIELD = _Field(_read_root, lambda root: root)
_UNIT_FIELDS = {
    "spec": _SPEC_FIELD,
    "code": _Field(_read_code, lambda code: code),
    "args": _Field(_read_args, dict),
    "desc": _Field(_read_desc, lambda desc: desc),
    "children": _Field(_read_children, list),
    "gautests": _Field(_read_tests, dict),
}


def _strip_children_declarations(code: str, module: ast.Module) -> str:
    """The code without its top-level CHILDREN_DECLARATIONS assignments (unchanged when it uses them)."""
    drop = [s for s in module.body if _assigns(s, CHILDREN_DECLARATIONS)]
    reads = any(isinstance(n, ast.Name) and n.id == CHILDREN_DECLARATIONS and isinstance(n.ctx, ast.Load)
                for n in ast.walk(module))
    if not drop or reads:
        return code
    lines = code.splitlines(keepends=True)
    gone = {i for s in drop for i in range(s.lineno - 1, s.end_lineno)}
    stripped = "".join(line for i, line in enumerate(lines) if i not in gone).rstrip() + "\n"
    # A statement sharing a line with the assignment (`a = 1; CHILDREN_DECLARATIONS = []`)
    # would go too: keep the code as it is then.
    rest = ast.Module([s for s in module.body if s not in drop], [])
    return stripped if ast.dump(ast.parse(stripped)) == ast.dump(rest) else code


def _assigns(stmt: ast.stmt, name: str) -> bool:
    if isinstance(stmt, ast.Assign):
        targets = stmt.targets
    else:
        targets = [stmt.target] if isinstance(stmt, ast.AnnAssign) else []
    return any(isinstance(t, ast.Name) and t.id == name for t in targets)


# ---------------------------------------------------------------- errors


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _error(where: str, place: str, problem: str) -> TreeError:
    return TreeError(f"{where}: {place}: {problem}" if place else f"{where}: {problem}")


def _need(data: dict, key: str, kind, where: str, prefix: str):
    if key not in data:
        raise _error(where, prefix, f"missing {key!r}")
    value = data[key]
    if not isinstance(value, kind):
        raise _error(where, _join(prefix, key), f"expected {_kind_name(kind)}, got {type(value).__name__}")
    return value


def _kind_name(kind) -> str:
    names = {str: "a string", dict: "an object", list: "a list"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _drop_empty(meta: dict) -> None:
    """Leave out bookkeeping that holds nothing (a file as Genesys writes it needs little)."""
    units = meta["verbatim"].get("units", {})
    for unit_name in [n for n, kept in units.items() if not kept]:
        del units[unit_name]
    for part in ("layout", "verbatim"):
        for key in [k for k, v in meta[part].items() if not v]:
            del meta[part][key]
        if not meta[part]:
            del meta[part]

