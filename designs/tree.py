"""UnitTree: a design as a tree of GAUs, its JSON form, its edits, and its composition.

A tree has a root unit and, for every unit, its code (one GAU class named after the
unit, plus any helpers it needs), its spec, the names of its children, and its
default hyperparameters. Children that are declared (`declares`) but not yet
implemented are placeholders while a coder works unit by unit; a complete tree
implements every unit reachable from the root.

Trees are values: `replace`, `graft` and `subtree` return new trees.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from designs.gau import UnitDecl, UnitSpec

TREE_FORMAT = "genesys.unittree/1"

# Imports of the GAU runtime: composition inlines the runtime, so these are dropped.
RUNTIME_MODULES = {"designs", "designs.gau", "designs.lm", "model_discovery.model.utils.modules"}
_RUNTIME_FILES = ("gau.py", "lm.py")


class TreeError(ValueError):
    """A tree is malformed: the message says which unit, which line, and what is wrong."""


@dataclass
class Unit:
    """One implemented GAU of a tree."""

    name: str
    code: str
    spec: UnitSpec
    children: list[str] = field(default_factory=list)
    args: dict = field(default_factory=dict)
    desc: str = ""
    tests: dict[str, str] = field(default_factory=dict)  # extra @gau_test sources, by name

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "code": self.code,
            "spec": self.spec.to_dict(),
            "children": list(self.children),
            "args": copy.deepcopy(self.args),
            "desc": self.desc,
            "tests": dict(self.tests),
        }


# ---------------------------------------------------------------- code analysis


def parse_unit_code(name: str, code: str) -> ast.Module:
    """Parse a unit's code, or raise TreeError naming the unit and the line."""
    try:
        return ast.parse(code)
    except SyntaxError as e:
        line = (e.text or "").strip()
        raise TreeError(f"unit {name}: code does not parse: line {e.lineno}: {e.msg}: {line!r}") from None


def _class_def(module: ast.Module, name: str) -> ast.ClassDef | None:
    return next((n for n in module.body if isinstance(n, ast.ClassDef) and n.name == name), None)


def called_names(node: ast.AST) -> set[str]:
    """Names called as plain functions anywhere under node (`Foo(...)` gives 'Foo')."""
    return {
        n.func.id for n in ast.walk(node) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
    }


def _strip_docstrings(module: ast.Module) -> ast.Module:
    for node in ast.walk(module):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return module


def normalize_code(code: str) -> str:
    """Code with comments, docstrings and formatting removed: equal for equal programs."""
    try:
        return ast.unparse(_strip_docstrings(ast.parse(code)))
    except SyntaxError:
        lines = (ln.split("#", 1)[0].rstrip() for ln in code.splitlines())
        return "\n".join(ln for ln in lines if ln.strip())


def _defined_names(stmt: ast.stmt) -> list[str]:
    if isinstance(stmt, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
        return [stmt.name]
    if isinstance(stmt, (ast.Assign, ast.AnnAssign)):
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
        return [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
    return []


@dataclass
class _Piece:
    """A top-level statement of unit code, with its source text (comments above included)."""

    names: list[str]
    source: str
    is_import: bool
    is_future: bool = False
    start: int = 1  # line of `source`'s first line in the code it was cut from


def split_module(code: str, module: ast.Module) -> list[_Piece]:
    """Cut code into top-level statements, keeping the comments and blank lines above each."""
    lines = code.splitlines()
    pieces, prev_end = [], 0
    for stmt in module.body:
        end = stmt.end_lineno or stmt.lineno
        text = "\n".join(lines[prev_end:end])
        prev_end = end
        is_import = isinstance(stmt, (ast.Import, ast.ImportFrom))
        is_future = isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__"
        if is_import and isinstance(stmt, ast.ImportFrom) and stmt.module in RUNTIME_MODULES:
            continue  # the runtime is inlined
        if is_import:
            text = ast.unparse(stmt)
        pieces.append(_Piece(_defined_names(stmt), text, is_import, is_future, start=end - text.count("\n")))
    return pieces


def _runtime_pieces() -> list[_Piece]:
    pieces = []
    for fname in _RUNTIME_FILES:
        code = (Path(__file__).parent / fname).read_text()
        pieces += split_module(code, ast.parse(code))
    return pieces


# ---------------------------------------------------------------- the tree


@dataclass
class UnitTree:
    name: str
    root: str
    units: dict[str, Unit] = field(default_factory=dict)
    declares: dict[str, UnitDecl] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)  # family, paper, description, ...

    # ---- JSON

    def to_dict(self) -> dict:
        return {
            "format": TREE_FORMAT,
            "name": self.name,
            "root": self.root,
            "units": {n: u.to_dict() for n, u in self.units.items()},
            "declares": {n: d.to_dict() for n, d in self.declares.items()},
            "meta": copy.deepcopy(self.meta),
        }

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict, where: str = "tree JSON") -> "UnitTree":
        return _tree_from_dict(data, where)

    @classmethod
    def from_json(cls, text: str, where: str = "tree JSON") -> "UnitTree":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise TreeError(f"{where}: not valid JSON: line {e.lineno} column {e.colno}: {e.msg}") from None
        return _tree_from_dict(data, where)

    # ---- structure

    def reachable(self) -> list[str]:
        """Units and declarations reachable from the root, depth first, root first."""
        seen: list[str] = []

        def visit(name: str) -> None:
            if name in seen:
                return
            seen.append(name)
            if name in self.units:
                for child in self.units[name].children:
                    visit(child)

        visit(self.root)
        return seen

    def missing(self) -> list[str]:
        """Declared children reachable from the root that have no implementation yet."""
        return [n for n in self.reachable() if n not in self.units]

    def kwarg_all(self) -> dict:
        """Every hyperparameter of the design: the units' args merged, the root's first."""
        merged: dict = {}
        for name in self.reachable():
            for key, value in self.units.get(name, Unit(name, "", UnitSpec(name))).args.items():
                merged.setdefault(key, copy.deepcopy(value))
        return merged

    def validate(self, complete: bool = True) -> "UnitTree":
        """Raise TreeError listing every problem; with complete=False placeholders are fine."""
        problems = _problems(self, complete)
        if problems:
            raise TreeError(f"design {self.name}: " + "; ".join(problems))
        return self

    # ---- identity and rendering

    def fingerprint(self) -> str:
        """sha256 of the normalized code, children and args of the units in use."""
        body = {
            "root": self.root,
            "units": {
                n: {
                    "code": normalize_code(self.units[n].code),
                    "children": sorted(self.units[n].children),
                    "args": self.units[n].args,
                }
                for n in sorted(self.reachable())
                if n in self.units
            },
        }
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def view(self) -> str:
        """The tree as indented text for prompts and terminals."""
        lines = [f"{self.name} (root {self.root}, {len(self.units)} units)"]

        def line(name: str, prefix: str, last: bool, path: tuple) -> None:
            branch = "" if not path else ("└─ " if last else "├─ ")
            unit = self.units.get(name)
            if unit is None:
                decl = self.declares.get(name)
                what = decl.requirements if decl else "undeclared"
                lines.append(f"{prefix}{branch}{name} [declared, not implemented]: {_one_line(what)}")
                return
            args = ", ".join(f"{k}={v!r}" for k, v in unit.args.items())
            text = f"{prefix}{branch}{name}: {_one_line(unit.desc or unit.spec.document)}"
            lines.append(text + (f" ({args})" if args else ""))
            if name in path:
                return
            child_prefix = prefix + ("" if not path else ("   " if last else "│  "))
            for i, child in enumerate(unit.children):
                line(child, child_prefix, i == len(unit.children) - 1, path + (name,))

        line(self.root, "", True, ())
        return "\n".join(lines)

    # ---- composition

    def compose(self, include_tests: bool = True) -> str:
        """One self-contained Python module: the GAU runtime, every unit, and the design.

        The module needs only torch. It defines ROOT_UNIT, KWARG_ALL and
        `build_model(d_model, n_block, vocab_size)`, and runs a smoke test as a script.
        """
        return self.compose_with_map(include_tests)[0]

    def compose_with_map(self, include_tests: bool = True) -> tuple[str, dict[int, tuple[str, int]]]:
        """The composed source and where its lines come from: composed line -> (unit, line in its code).

        Tracebacks in design code point into the composed source; the map turns them
        back into lines of the unit a coder wrote. Runtime, import and footer lines
        are not in the map.
        """
        self.validate(complete=True)
        runtime = _runtime_pieces()
        reserved = {n for p in runtime if not p.is_import for n in p.names}
        imports, seen_imports = [], set()
        body = ["# " + "=" * 20 + " Genesys runtime: the GAU contract and the LM wrapper"]
        origins: list[tuple[int, str, int]] = []  # (index in body, unit, first line in the unit's code)
        for piece in runtime:
            _add_import(piece, imports, seen_imports) if piece.is_import else body.append(piece.source)
        defined: dict[str, tuple[str, str]] = {}
        for name in self.reachable():
            unit = self.units[name]
            body.append(f"\n\n# {'-' * 20} unit: {name}")
            for piece in self._unit_pieces(unit, include_tests):
                if piece.is_import:
                    _add_import(piece, imports, seen_imports)
                elif _claim_names(piece, name, defined, reserved):
                    origins.append((len(body), name, piece.start))
                    body.append(piece.source)
        header = f'"""Genesys design {self.name}: composed from its unit tree (fingerprint {self.fingerprint()[:16]})."""'
        future = sorted({p for p in imports if p.startswith("from __future__")})
        rest = [p for p in imports if p not in future]
        head = [header, *future, *rest, ""]
        line_of_body = [len(head) + 1]  # composed line where each body chunk starts
        for chunk in body:
            line_of_body.append(line_of_body[-1] + chunk.count("\n") + 1)
        line_map = {}
        for index, unit_name, start in origins:
            for offset in range(body[index].count("\n") + 1):
                line_map[line_of_body[index] + offset] = (unit_name, start + offset)
        return "\n".join([*head, *body, _design_footer(self), ""]), line_map

    def _unit_pieces(self, unit: Unit, include_tests: bool) -> list[_Piece]:
        pieces = split_module(unit.code, parse_unit_code(unit.name, unit.code))
        if include_tests:
            for test_name, test_code in unit.tests.items():
                pieces += split_module(test_code, parse_unit_code(f"{unit.name} test {test_name}", test_code))
        else:
            pieces = [p for p in pieces if "@gau_test" not in p.source]
        return pieces

    def with_stubs(self) -> "UnitTree":
        """A runnable tree in which every declared, unimplemented child is an identity GAU.

        A coder works unit by unit: a unit is checked before its declared children
        exist. Each stand-in returns Y = X and leaves Z as it found it, so the block
        builds, runs and trains around the unit under check. The stand-ins are
        named in `meta["stubs"]`; a complete tree comes back unchanged.
        """
        self.validate(complete=False)
        stubbed = copy.deepcopy(self)
        stubs = [n for n in self.missing() if n in self.declares]
        for name in stubs:
            decl = self.declares[name]
            stubbed.units[name] = Unit(
                name=name,
                code=_identity_unit_code(name),
                spec=UnitSpec(name, f"identity stand-in for a declared child: {decl.requirements}",
                              list(decl.inputs), list(decl.outputs)),
                desc="identity stand-in (Y = X): declared, not implemented yet",
            )
        if stubs:
            stubbed.meta["stubs"] = stubs
        return stubbed.validate(complete=True)

    # ---- edits

    def subtree(self, name: str) -> "UnitTree":
        """The tree rooted at one of this tree's units."""
        if name not in self.units:
            raise TreeError(f"design {self.name}: no unit named {name!r} (units: {', '.join(self.units)})")
        sub = UnitTree(f"{self.name}.{name}", name, copy.deepcopy(self.units), copy.deepcopy(self.declares))
        return sub.pruned()

    def pruned(self) -> "UnitTree":
        """This tree without units and declarations the root no longer reaches."""
        keep = set(self.reachable())
        declared = {c for n in keep if n in self.units for c in self.units[n].children}
        return UnitTree(
            self.name,
            self.root,
            {n: copy.deepcopy(u) for n, u in self.units.items() if n in keep},
            {n: copy.deepcopy(d) for n, d in self.declares.items() if n in declared},
            copy.deepcopy(self.meta),
        )

    def replace(self, name: str, code: str, *, children: list[str] | None = None, args: dict | None = None,
                spec: UnitSpec | None = None, desc: str | None = None,
                declares: dict[str, UnitDecl] | None = None) -> "UnitTree":
        """A new tree whose unit `name` has new code (the edit a mutation makes).

        Children default to the known units and declarations the new code
        instantiates; `declares` adds declarations for new children. Units no longer
        reached are dropped. The result may hold placeholders (validated partially).
        """
        if name not in self.units and name not in self.declares:
            raise TreeError(f"design {self.name}: cannot replace {name!r}: no such unit or declaration")
        module = parse_unit_code(name, code)
        new = copy.deepcopy(self)
        new.declares.update(copy.deepcopy(declares or {}))
        known = (set(new.units) | set(new.declares)) - {name}
        old = new.units.get(name)
        new.units[name] = Unit(
            name=name,
            code=code,
            spec=spec or (old.spec if old else UnitSpec(name, new.declares[name].requirements)),
            children=list(children) if children is not None else sorted(called_names(module) & known),
            args=dict(args) if args is not None else (dict(old.args) if old else {}),
            desc=desc if desc is not None else (old.desc if old else ""),
            tests=dict(old.tests) if old else {},
        )
        return new.pruned().validate(complete=False)

    def graft(self, subtree: "UnitTree", at: str | None = None) -> "UnitTree":
        """A new tree with `subtree` put in place of unit `at` (the edit a crossover makes).

        `at` defaults to the subtree's root name. When the names differ, the subtree's
        root class is renamed to `at` so the parent's code still instantiates it.
        A unit of the subtree that clashes with a different unit of the same name
        elsewhere in this tree is an error.
        """
        at = at or subtree.root
        if at not in self.units and at not in self.declares:
            raise TreeError(f"design {self.name}: cannot graft at {at!r}: no such unit or declaration")
        incoming = subtree.pruned()
        if incoming.root != at:
            incoming = _rename_root(incoming, at)
        base = copy.deepcopy(self)
        base.units.pop(at, None)
        base = base.pruned() if at != base.root else UnitTree(base.name, at, {}, {}, base.meta)
        for name, unit in incoming.units.items():
            if name in base.units and normalize_code(base.units[name].code) != normalize_code(unit.code):
                raise TreeError(
                    f"design {self.name}: cannot graft {subtree.name}: both trees have a unit {name!r} "
                    f"with different code; rename one of them first"
                )
            base.units[name] = copy.deepcopy(unit)
        for name, decl in incoming.declares.items():
            base.declares.setdefault(name, copy.deepcopy(decl))
        return base.pruned().validate(complete=False)


# ---------------------------------------------------------------- helpers


def _one_line(text: str, limit: int = 100) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _add_import(piece: _Piece, imports: list[str], seen: set[str]) -> None:
    if piece.source not in seen:
        seen.add(piece.source)
        imports.append(piece.source)


def _claim_names(piece: _Piece, unit: str, defined: dict, reserved: set[str]) -> bool:
    """Record the names a unit's statement defines; False when it repeats an identical one."""
    normalized = normalize_code(piece.source)
    for name in piece.names:
        if name in reserved:
            raise TreeError(f"unit {unit}: defines {name!r}, a name the Genesys runtime reserves; rename it")
        if name in defined:
            other_unit, other_source = defined[name]
            if other_source == normalized:
                return False
            raise TreeError(
                f"unit {unit}: defines top-level {name!r}, which unit {other_unit} defines differently; "
                f"rename one of them"
            )
    for name in piece.names:
        defined[name] = (unit, normalized)
    return True


def _identity_unit_code(name: str) -> str:
    """The code of a stand-in GAU that passes X through unchanged (see UnitTree.with_stubs)."""
    return (
        "from designs.gau import GAUBase\n\n\n"
        f"class {name}(GAUBase):\n"
        f'    """Identity stand-in for the declared child {name}: Y = X, Z unchanged."""\n\n'
        f"    def __init__(self, embed_dim, block_loc, kwarg_all, device=None, dtype=None, **kwargs):\n"
        f"        self.factory_kwargs = {{\"device\": device, \"dtype\": dtype}}\n"
        f"        super().__init__(embed_dim, block_loc, kwarg_all)\n\n"
        f"    def _forward(self, X, **Z):\n"
        f"        return X\n"
    )


def _rename_root(tree: UnitTree, new_name: str) -> UnitTree:
    """The tree with its root unit's class renamed (references inside its code too)."""
    old = tree.root
    unit = copy.deepcopy(tree.units[old])
    module = parse_unit_code(old, unit.code)
    for node in ast.walk(module):
        if isinstance(node, ast.ClassDef) and node.name == old:
            node.name = new_name
        elif isinstance(node, ast.Name) and node.id == old:
            node.id = new_name
    unit.name, unit.code = new_name, ast.unparse(module)
    unit.spec = UnitSpec(new_name, unit.spec.document, unit.spec.inputs, unit.spec.outputs)
    units = {n: u for n, u in tree.units.items() if n != old}
    units[new_name] = unit
    return UnitTree(tree.name, new_name, units, tree.declares, tree.meta)


def _problems(tree: UnitTree, complete: bool) -> list[str]:
    problems = []
    if not tree.root:
        return ["no root unit"]
    if tree.root not in tree.units and (complete or tree.root not in tree.declares):
        return [f"root {tree.root!r} is not among the units ({', '.join(tree.units) or 'none'})"]
    known = set(tree.units) | set(tree.declares)
    for name, unit in tree.units.items():
        if unit.name != name:
            problems.append(f"unit stored under {name!r} is named {unit.name!r}")
        try:
            module = parse_unit_code(name, unit.code)
        except TreeError as e:
            problems.append(str(e))
            continue
        cls = _class_def(module, name)
        if cls is None:
            problems.append(f"unit {name}: code defines no class named {name}")
            continue
        used = called_names(cls) & (known - {name})
        for child in unit.children:
            if child not in known:
                problems.append(f"unit {name}: child {child!r} is neither implemented nor declared")
            elif child not in used:
                problems.append(f"unit {name}: lists child {child!r} but its code never instantiates it")
        for child in sorted(used - set(unit.children)):
            problems.append(f"unit {name}: instantiates {child} without listing it as a child")
    cycle = _find_cycle(tree)
    if cycle:
        problems.append("cycle: " + " -> ".join(cycle))
    if complete and not cycle:
        for name in (n for n in tree.missing() if n in tree.declares):
            problems.append(f"child {name!r} is declared but never implemented")
    return problems


def _find_cycle(tree: UnitTree) -> list[str]:
    def visit(name: str, path: list[str]) -> list[str]:
        if name in path:
            return path[path.index(name):] + [name]
        for child in tree.units[name].children if name in tree.units else []:
            found = visit(child, path + [name])
            if found:
                return found
        return []

    return visit(tree.root, [])


def _design_footer(tree: UnitTree) -> str:
    return f'''

# {"=" * 20} the design
DESIGN_NAME = {tree.name!r}
ROOT_UNIT = {tree.root}
KWARG_ALL = {tree.kwarg_all()!r}


def build_model(d_model, n_block, vocab_size=256, device=None, dtype=None, **overrides):
    """The language model of this design at one size; `overrides` change hyperparameters."""
    config = LMConfig(vocab_size=vocab_size, d_model=d_model, n_block=n_block)
    return DesignLM(ROOT_UNIT, config, {{**KWARG_ALL, **overrides}}, device=device, dtype=dtype)


if __name__ == "__main__":
    import torch as _torch

    _model = build_model(d_model=64, n_block=2)
    _tokens = _torch.randint(0, 256, (2, 32))
    _loss = _model.loss(_tokens)
    _loss.backward()
    print(f"{{DESIGN_NAME}}: {{_model.num_params(non_embedding=True):,}} non-embedding parameters, "
          f"loss {{_loss.item():.3f}} at init (ln 256 = 5.545)")
'''


# ---------------------------------------------------------------- JSON reading


def _need(data: dict, key: str, kind: type, where: str):
    if not isinstance(data, dict):
        raise TreeError(f"{where}: expected an object, got {type(data).__name__}")
    if key not in data:
        raise TreeError(f"{where}: missing field {key!r}")
    value = data[key]
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise TreeError(f"{where}.{key}: expected {names}, got {type(value).__name__}")
    return value


def _spec_from(data, name: str, where: str) -> UnitSpec:
    if data is None:
        return UnitSpec(name)
    if not isinstance(data, dict):
        raise TreeError(f"{where}: expected an object, got {type(data).__name__}")
    return UnitSpec(
        unitname=data.get("unitname", name),
        document=data.get("document", ""),
        inputs=list(data.get("inputs", ["X"])),
        outputs=list(data.get("outputs", ["Y"])),
    )


def _decl_from(data, name: str, where: str) -> UnitDecl:
    if not isinstance(data, dict):
        raise TreeError(f"{where}: expected an object, got {type(data).__name__}")
    return UnitDecl(
        unitname=data.get("unitname", name),
        requirements=data.get("requirements", ""),
        inputs=list(data.get("inputs", ["X"])),
        outputs=list(data.get("outputs", ["Y"])),
    )


def _tree_from_dict(data: dict, where: str = "tree JSON") -> UnitTree:
    fmt = data.get("format", TREE_FORMAT) if isinstance(data, dict) else None
    if fmt != TREE_FORMAT:
        raise TreeError(f"{where}: format {fmt!r} is not {TREE_FORMAT!r}")
    name = _need(data, "name", str, where)
    root = _need(data, "root", str, where)
    units = {}
    for uname, u in _need(data, "units", dict, where).items():
        uwhere = f"{where}.units.{uname}"
        units[uname] = Unit(
            name=_need(u, "name", str, uwhere) if isinstance(u, dict) and "name" in u else uname,
            code=_need(u, "code", str, uwhere),
            spec=_spec_from(u.get("spec"), uname, uwhere + ".spec"),
            children=list(_need(u, "children", list, uwhere)) if "children" in u else [],
            args=dict(_need(u, "args", dict, uwhere)) if "args" in u else {},
            desc=u.get("desc", "") or "",
            tests=dict(u.get("tests") or {}),
        )
    declares = {
        dname: _decl_from(d, dname, f"{where}.declares.{dname}")
        for dname, d in (data.get("declares") or {}).items()
    }
    return UnitTree(name, root, units, declares, dict(data.get("meta") or {}))
