"""The format checker: the static rules a coder's unit code must follow (AST only, never run).

A unit's code is a Python module that defines one GAU class named after the unit,
plus optional helper functions and constants and `@gau_test` functions. The checker
reads it with `ast` and reports, for an LLM coder, what is wrong, where (unit and
line), and exactly what to write instead. It never imports or executes the code.

Rules (the `check` id of each finding):

- `format.syntax`: the code does not parse (line and offending text).
- `format.gau-class`: no class named after the unit, or that class does not derive from GAUBase.
- `format.one-gau-class`: a second GAU class in the same code (it must be its own unit).
- `format.helper-module`: a helper class deriving from nn.Module. An error when it looks
  like a GAU in disguise (it has `_forward`, or takes block_loc / kwarg_all); a warning
  otherwise (allowed, as in the Hyena seed's implicit filter, but invisible to the tree).
- `format.missing-forward`, `format.forward-override`, `format.forward-signature`:
  `_forward` must be defined; `forward` must not be.
- `format.forward-return`: every `return` of `_forward` gives Y or (Y, dict of Z updates).
- `format.init-signature`: `__init__(self, embed_dim, block_loc, kwarg_all, device=None,
  dtype=None, ..., **kwargs)`.
- `format.super-init`, `format.super-init-order`, `format.factory-kwargs`: the GAUBase
  initializer is called (with embed_dim, block_loc, kwarg_all) before any layer is
  assigned; `self.factory_kwargs` is set when used.
- `format.child-unused`, `format.child-undeclared`, `format.child-args`,
  `format.child-in-forward`, `format.child-not-registered`: declared children are
  instantiated in `__init__` and used in `_forward`; every unit instantiated is
  declared; instantiations pass embed_dim, block_loc, kwarg_all and the factory kwargs.
- `format.z-threading` (warning): a child call that does not pass `**Z` or drops the Z it returns.
- `format.forbidden-import`, `format.import-warning`: imports outside the whitelist.
- `format.forbidden-call`, `format.file-read`, `format.dynamic-access`: eval/exec,
  processes, files, network, environment, pickles, and reflective tricks that reach them.
- `format.gau-test`: a `@gau_test` function must accept `device` and `dtype`.
- `format.top-level-code` (warning): statements that run when the module is loaded.

Safe auto-fixes, applied to the source lines (the coder's formatting is kept) and
reported as `AutoFix`: a missing `super().__init__(embed_dim, block_loc, kwarg_all)` in
the GAU's `__init__`, and a missing `self.factory_kwargs = {"device": device, "dtype":
dtype}` when the code uses `self.factory_kwargs`. Findings refer to lines of the fixed code.
"""

from __future__ import annotations

import ast
import builtins
import copy
import re
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

from designs.tree import RUNTIME_MODULES, UnitTree
from verifier.report import ERROR, WARNING, AutoFix, CheckReport, Finding, HasFindings

STAGE = "format"

# ---------------------------------------------------------------- what may be imported and called

# Top-level packages unit code may import (any submodule, except the FORBIDDEN_ATTRS below).
ALLOWED_MODULES = ("torch", "math", "functools", "itertools", "typing", "dataclasses", "collections",
                   "einops", "numpy", "__future__")
WARN_MODULES = {
    "einops": "einops may not be installed where the design is trained; torch's view/reshape/permute/"
              "einsum do the same",
    "numpy": "numpy runs on the CPU outside autograd; prefer torch, which keeps tensors on the device and "
             "gradients flowing",
}
# Modules with a reason stated in the message (everything outside ALLOWED_MODULES is refused anyway).
FORBIDDEN_MODULES = {
    "subprocess": "it runs other programs",
    "socket": "it opens network connections",
    "ctypes": "it calls native code outside Python's control",
    "multiprocessing": "it starts processes",
    "shutil": "it copies and deletes files",
    "requests": "it reaches the network",
    "httpx": "it reaches the network",
    "urllib": "it reaches the network",
    "http": "it reaches the network",
    "importlib": "it imports modules by computed names",
    "pickle": "loading a pickle runs arbitrary code",
    "marshal": "it loads code objects",
    "os": "it reaches files, processes and environment variables (where secrets live)",
    "sys": "it reaches the interpreter itself (exit, loaded modules, frames)",
    "builtins": "it reaches eval/exec/open and the other builtins by name",
    "inspect": "it reaches stack frames and their globals",
    "io": "it reads and writes files",
    "pathlib": "it reads and writes files",
    "tempfile": "it creates files",
    "threading": "it starts threads",
    "signal": "it changes how the process handles signals",
}
# Attributes of allowed modules (dotted, a prefix matches its sub-attributes) that unit code may not touch.
FORBIDDEN_ATTRS = {
    "torch.load": "it unpickles a file, which can run arbitrary code",
    "torch.save": "it writes files",
    "torch.from_file": "it reads files",
    "torch.serialization": "it reads and writes pickled files",
    "torch.hub": "it downloads and runs code",
    "torch.package": "it loads pickled code",
    "torch.utils.cpp_extension": "it compiles and loads native code",
    "torch.utils.tensorboard": "it writes files",
    "torch.ops.load_library": "it loads native code",
    "torch.classes.load_library": "it loads native code",
    "torch.jit.load": "it loads serialized code",
    "torch.jit.save": "it writes files",
    "torch.distributed": "it opens network connections",
    "torch.multiprocessing": "it starts processes",
    "numpy.load": "it can unpickle a file, which can run arbitrary code",
    "numpy.save": "it writes files",
    "numpy.savez": "it writes files",
    "numpy.savez_compressed": "it writes files",
    "numpy.savetxt": "it writes files",
    "numpy.loadtxt": "it reads files",
    "numpy.genfromtxt": "it reads files",
    "numpy.fromfile": "it reads files",
    "numpy.memmap": "it maps files",
    "numpy.ctypeslib": "it loads native code",
    "numpy.lib.format": "it reads and writes files",
    "numpy.lib.npyio": "it reads and writes files",
    "numpy.DataSource": "it opens files and URLs",
    "os.system": "it runs a shell command",
    "os.popen": "it runs a shell command",
    "os.kill": "it signals processes",
    "os.killpg": "it signals processes",
    "os.remove": "it deletes files",
    "os.unlink": "it deletes files",
    "os.rmdir": "it deletes directories",
    "os.removedirs": "it deletes directories",
    "os.rename": "it moves files",
    "os.replace": "it moves files",
    "os.open": "it opens files",
    "os.write": "it writes files",
    "os.environ": "it reads environment variables, where secrets live",
    "os.environb": "it reads environment variables, where secrets live",
    "os.getenv": "it reads environment variables, where secrets live",
    "os.putenv": "it changes environment variables",
    "sys.exit": "it stops the process",
    "sys.modules": "it reaches every loaded module",
    "sys._getframe": "it reaches stack frames and their globals",
    "sys.settrace": "it hooks the interpreter",
    "sys.setprofile": "it hooks the interpreter",
}
FORBIDDEN_ATTR_PATTERNS = [(re.compile(r"^os\.(exec|spawn|posix_spawn|fork)\w*"), "it starts processes")]
# Builtins that may not appear at all (unless the code defines a name of its own that shadows them).
FORBIDDEN_BUILTINS = {
    "eval": "it runs code built from a string",
    "exec": "it runs code built from a string",
    "compile": "it builds code objects from strings",
    "__import__": "it imports modules by computed names",
    "breakpoint": "it stops in a debugger and waits",
    "input": "it waits for someone to type at the terminal",
    "exit": "it stops the process",
    "quit": "it stops the process",
    "globals": "it hands out the module namespace, a way around these rules",
}
# These are never legitimate in a model, even where the code binds the name itself.
ALWAYS_FORBIDDEN = {"eval", "exec", "__import__", "__builtins__"}
# Attributes that reach interpreter internals (globals, builtins, all classes).
ESCAPE_ATTRS = {"__globals__", "__builtins__", "__subclasses__", "__code__", "__closure__", "__import__",
                "__loader__", "__spec__", "__getattribute__", "__reduce__", "__reduce_ex__", "__func__",
                "f_globals", "f_locals", "f_back", "gi_frame", "tb_frame"}
_OPEN_WRITE_CHARS = set("wax+")

GAU_BASE = "GAUBase"
CHILD_ARGS = ("embed_dim", "block_loc", "kwarg_all")
_INIT_SNIPPET = (
    "def __init__(self, embed_dim, block_loc, kwarg_all, device=None, dtype=None, my_arg: int = 4, **kwargs):\n"
    '    self.factory_kwargs = {"device": device, "dtype": dtype}\n'
    "    super().__init__(embed_dim, block_loc, kwarg_all)"
)
_Z_EXPLAINED = (
    "A child returns (Y, Z): Y its output, Z the dict of intermediate variables with the child's updates. "
    "Pass Z in with **Z and take it back, so that the variables this unit sets reach the child and the "
    "variables the child writes reach the units after it."
)


@dataclass
class FormatResult(HasFindings):
    """What the format checker says about one unit: the code after safe fixes, findings, fixes."""

    code: str  # the code after safe auto-fixes
    findings: list[Finding] = field(default_factory=list)
    autofixes: list[AutoFix] = field(default_factory=list)


# ---------------------------------------------------------------- entry points


def check_unit_code(name: str, code: str, declared_children: list[str] | None = None) -> FormatResult:
    """Check one unit's code; apply the safe auto-fixes; report findings on the fixed code.

    `declared_children`: the names of the GAU units this unit declares as children. With
    None the declared/used comparison is skipped (the other child rules still apply).
    """
    module, finding = _parse(name, code)
    if module is None:
        return FormatResult(code, [finding], [])
    fixed, autofixes = _apply_fixes(name, code, module)
    if autofixes:
        fixed_module, _ = _parse(name, fixed)
        if fixed_module is None:  # cannot happen for the insertions made; never hand out broken code
            fixed, autofixes = code, []
        else:
            module = fixed_module
    checker = _UnitChecker(name, fixed, module, declared_children)
    checker.run()
    findings = sorted(checker.findings, key=lambda f: (f.line or 0, f.severity != ERROR))
    return FormatResult(fixed, findings, autofixes)


def check_test_code(unit: str, test_name: str, code: str) -> list[Finding]:
    """The security rules (and the `@gau_test` signature) for a unit test kept outside the unit's code.

    Line numbers are lines of the test's own source, so they go in the message, and
    `Finding.line` (a line of the unit's code) stays empty.
    """
    where = f"unit test {test_name!r}"
    module, finding = _parse(unit, code)
    if module is None:
        finding.message = f"{where}: {finding.message}"
        finding.line = None
        return [finding]
    checker = _UnitChecker(unit, code, module, None)
    checker.check_imports()
    checker.check_security()
    checker.check_gau_tests()
    out = []
    for f in checker.findings:
        at = f" line {f.line}" if f.line else ""
        out.append(replace(f, message=f"{where}{at}: {f.message}", line=None))
    return out


def check_tree(tree: UnitTree) -> tuple[UnitTree, CheckReport]:
    """Check every implemented unit of a tree (and its extra unit tests).

    Returns the tree with each unit's code replaced by its auto-fixed code (everything
    else identical) and a CheckReport with every finding and auto-fix, stages ["format"].
    """
    new = copy.deepcopy(tree)
    report = CheckReport(design=tree.name, stages=[STAGE])
    for name, unit in tree.units.items():
        result = check_unit_code(name, unit.code, list(unit.children))
        if result.code != unit.code:
            new.units[name] = replace(new.units[name], code=result.code)
        report.findings += result.findings
        report.autofixes += result.autofixes
        for test_name, test_code in (unit.tests or {}).items():
            report.findings += check_test_code(name, test_name, test_code)
    return new, report


# ---------------------------------------------------------------- parsing


def _parse(name: str, code: str) -> tuple[ast.Module | None, Finding | None]:
    try:
        return ast.parse(code), None
    except SyntaxError as e:
        text = (e.text or "").strip()
        if not text and e.lineno and 0 < e.lineno <= len(code.splitlines()):
            text = code.splitlines()[e.lineno - 1].strip()
        where = f"line {e.lineno}" + (f", column {e.offset}" if e.offset else "")
        return None, Finding(
            "format.syntax", ERROR,
            f"the code does not parse: {e.msg} at {where}: `{text}`",
            f"Correct the Python syntax at line {e.lineno} (`{text}`) and resubmit the whole unit: "
            "check brackets, colons, indentation and string quotes there and on the line before.",
            name, e.lineno)
    except (ValueError, RecursionError, MemoryError) as e:  # null bytes, absurd nesting
        line = next((i + 1 for i, ln in enumerate(code.splitlines()) if "\x00" in ln), None)
        return None, Finding(
            "format.syntax", ERROR, f"the code cannot be parsed: {e}",
            "Submit plain Python source text: no null bytes, no absurdly deep nesting.", name, line)


# ---------------------------------------------------------------- auto-fixes


def _own_nodes(func: ast.AST):
    """Nodes under a function's body, not descending into nested functions, lambdas or classes."""
    stack = list(getattr(func, "body", []))
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
                stack.append(child)


def _is_docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


def _init_calls(init: ast.FunctionDef) -> tuple[list[ast.Call], list[ast.Call]]:
    """(calls of the GAUBase initializer, calls of some other base's __init__) in __init__."""
    supers, others = [], []
    for node in _own_nodes(init):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "__init__":
            base = node.func.value
            if isinstance(base, ast.Call) and isinstance(base.func, ast.Name) and base.func.id == "super":
                supers.append(node)
            elif (isinstance(base, ast.Name) and base.id == GAU_BASE) or \
                    (isinstance(base, ast.Attribute) and base.attr == GAU_BASE):
                supers.append(node)
            else:
                others.append(node)
    return supers, others


def _self_attr(node: ast.AST, self_name: str, attr: str | None = None) -> bool:
    return (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == self_name
            and (attr is None or node.attr == attr))


def _top_stmt(body: list[ast.stmt], node: ast.AST) -> ast.stmt | None:
    """The statement of `body` that contains `node` (by line span)."""
    for stmt in body:
        if stmt.lineno <= node.lineno <= (stmt.end_lineno or stmt.lineno):
            return stmt
    return None


def _method(cls: ast.ClassDef, name: str) -> ast.FunctionDef | None:
    found = [n for n in cls.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name]
    return found[-1] if found else None


def _param_names(func: ast.FunctionDef) -> tuple[list[str], list[str]]:
    a = func.args
    return [x.arg for x in a.posonlyargs + a.args], [x.arg for x in a.kwonlyargs]


def _apply_fixes(name: str, code: str, module: ast.Module) -> tuple[str, list[AutoFix]]:
    """Insert a missing GAUBase initializer call and a missing factory_kwargs line, on source lines."""
    cls = next((n for n in module.body if isinstance(n, ast.ClassDef) and n.name == name), None)
    if cls is None or not any(_base_name(b) == GAU_BASE for b in cls.bases):
        return code, []
    init = _method(cls, "__init__")
    if init is None or isinstance(init, ast.AsyncFunctionDef) or not init.body:
        return code, []
    positional, kwonly = _param_names(init)
    if not positional:
        return code, []
    self_name = positional[0]
    supers, others = _init_calls(init)
    need_super = not supers and not others and len(positional) >= 4
    uses_factory = any(_self_attr(n, self_name, "factory_kwargs") for n in ast.walk(cls))
    sets_factory = any(
        isinstance(n, (ast.Assign, ast.AnnAssign, ast.AugAssign)) and any(
            _self_attr(t, self_name, "factory_kwargs") for t in (n.targets if isinstance(n, ast.Assign) else [n.target]))
        for n in ast.walk(cls))
    need_factory = uses_factory and not sets_factory and {"device", "dtype"} <= set(positional + kwonly)
    if not need_super and not need_factory:
        return code, []
    lines = re.findall(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$", code)  # the line breaks ast counts, no others
    checker = _UnitChecker(name, code, module, None)

    def starts_line(stmt: ast.stmt) -> bool:
        return lines[stmt.lineno - 1][:stmt.col_offset].strip() == ""

    body = init.body
    # Insert only where every statement of __init__ owns its lines (no `def f(): x` or `a; b`).
    if not all(starts_line(s) for s in body) or any(a.end_lineno >= b.lineno for a, b in zip(body, body[1:])):
        return code, []
    doc = body[0] if _is_docstring(body[0]) else None
    rest = body[1:] if doc else body
    factory_text = f'{self_name}.factory_kwargs = {{"device": device, "dtype": dtype}}'
    super_text = f"super().__init__({', '.join(positional[1:4])})"
    inserts: list[tuple[int, str, str]] = []  # (index of the line to insert before, text, description)
    if need_super:
        first = rest[0] if rest else None
        factory = next((s for s in rest if isinstance(s, ast.Assign)
                        and any(_self_attr(t, self_name, "factory_kwargs") for t in s.targets)), None)
        # After the factory line when nothing before it builds a layer (that needs the initializer first).
        early = factory is not None and not any(
            checker._builds_module(s) for s in rest[: rest.index(factory)])
        if early and not need_factory:
            index, indent_of = factory.end_lineno, factory
        elif doc is not None:
            index, indent_of = doc.end_lineno, first or doc
        else:
            index, indent_of = first.lineno - 1, first
        indent = lines[indent_of.lineno - 1][:indent_of.col_offset]
        if need_factory:
            inserts.append((index, indent + factory_text,
                            f"inserted `{factory_text}` in {name}.__init__: the code uses "
                            f"{self_name}.factory_kwargs but never set it"))
        inserts.append((index, indent + super_text,
                        f"inserted `{super_text}` in {name}.__init__: the GAUBase initializer sets up the "
                        f"module and self.embed_dim, self.block_loc, self.kwarg_all, and must run before any "
                        f"layer is assigned"))
    else:
        stmt = _top_stmt(body, supers[0])
        if stmt is None or not starts_line(stmt):
            return code, []
        indent = lines[stmt.lineno - 1][:stmt.col_offset]
        inserts.append((stmt.lineno - 1, indent + factory_text,
                        f"inserted `{factory_text}` before the GAUBase initializer call in {name}.__init__: "
                        f"the code uses {self_name}.factory_kwargs but never set it"))
    index = inserts[0][0]
    around = lines[index - 1] if index > 0 else (lines[0] if lines else "\n")
    newline = "\r\n" if around.endswith("\r\n") else "\n"
    if index > 0 and not lines[index - 1].endswith(("\n", "\r")):
        lines[index - 1] += newline
    new_lines = [text + newline for _, text, _ in inserts]
    fixed = "".join(lines[:index] + new_lines + lines[index:])
    fixes = [AutoFix(name, index + 1 + i, desc) for i, (_, _, desc) in enumerate(inserts)]
    return fixed, fixes


def _base_name(node: ast.AST) -> str:
    """The last name of a base class expression (`nn.Module` gives 'Module')."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Subscript):  # Generic[T] and the like
        return _base_name(node.value)
    return ""


# ---------------------------------------------------------------- the checker


@lru_cache(maxsize=None)
def _runtime_names() -> frozenset:
    """Top-level names the GAU runtime defines (composition inlines them into every design)."""
    names = set()
    for fname in ("gau.py", "lm.py"):
        path = Path(__file__).resolve().parents[1] / "designs" / fname
        try:
            module = ast.parse(path.read_text())
        except (OSError, SyntaxError):
            continue
        for stmt in module.body:
            if isinstance(stmt, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                names.add(stmt.name)
            elif isinstance(stmt, ast.Assign):
                names |= {t.id for t in stmt.targets if isinstance(t, ast.Name)}
    return frozenset(names | {"GAUBase", "gau_test", "UnitDecl", "UnitSpec", "GAUContractError"})


_BUILTIN_NAMES = frozenset(dir(builtins))


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def _child_snippet(child: str, attr: str) -> str:
    return (f"self.{attr} = {child}(embed_dim=self.embed_dim, block_loc=self.block_loc, "
            f"kwarg_all=self.kwarg_all, **self.factory_kwargs, **self.kwarg_all)")


class _UnitChecker:
    def __init__(self, name: str, code: str, module: ast.Module, declared: list[str] | None):
        self.name, self.code, self.module = name, code, module
        self.declared = None if declared is None else list(dict.fromkeys(declared))
        self.findings: list[Finding] = []
        self._seen: set = set()
        self.parents: dict[ast.AST, ast.AST] = {}
        for node in ast.walk(module):
            for child in ast.iter_child_nodes(node):
                self.parents[child] = node
        self.aliases: dict[str, str] = {}  # name bound by an import -> dotted path
        self.bound: set[str] = set()  # names the code binds itself (assignments, defs, parameters, ...)
        for node in ast.walk(module):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.asname:
                        self.aliases[a.asname] = a.name
                    else:
                        root = a.name.split(".")[0]
                        self.aliases[root] = root
            elif isinstance(node, ast.ImportFrom):
                for a in node.names:
                    if a.name != "*":
                        self.aliases[a.asname or a.name] = f"{'.' * node.level}{node.module or ''}.{a.name}" \
                            if node.module else f"{'.' * node.level}{a.name}"
            elif isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
                self.bound.add(node.id)
            elif isinstance(node, ast.arg):
                self.bound.add(node.arg)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self.bound.add(node.name)
            elif isinstance(node, ast.ExceptHandler) and node.name:
                self.bound.add(node.name)
            elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
                self.bound.add(node.name)
        self.class_kinds = self._class_kinds()
        self.tests = [n for n in module.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                      and any(_base_name(d.func if isinstance(d, ast.Call) else d) == "gau_test"
                              for d in n.decorator_list)]
        self.cls = next((n for n in module.body if isinstance(n, ast.ClassDef) and n.name == name), None)

    # ---- plumbing

    def add(self, check: str, severity: str, message: str, fix: str, line: int | None):
        key = (check, severity, line, message)
        if key not in self._seen:
            self._seen.add(key)
            self.findings.append(Finding(check, severity, message, fix, self.name, line))

    def src(self, node: ast.AST, limit: int = 120) -> str:
        text = ast.get_source_segment(self.code, node) or ast.unparse(node)
        text = " ".join(text.split())
        return text if len(text) <= limit else text[: limit - 3] + "..."

    def path(self, node: ast.AST) -> str | None:
        """The dotted path an expression names through imports (`F.gelu` -> torch.nn.functional.gelu)."""
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id)
        if isinstance(node, ast.Attribute):
            base = self.path(node.value)
            return f"{base}.{node.attr}" if base else None
        return None

    def enclosing(self, node: ast.AST, kinds) -> ast.AST | None:
        node = self.parents.get(node)
        while node is not None and not isinstance(node, kinds):
            node = self.parents.get(node)
        return node

    def in_test(self, node: ast.AST) -> bool:
        return any(t.lineno <= getattr(node, "lineno", 0) <= t.end_lineno for t in self.tests)

    def _class_kinds(self) -> dict[str, str]:
        """Each class of the code: 'gau' (derives from GAUBase), 'module' (from nn.Module), or 'other'."""
        kinds: dict[str, str] = {}
        for node in ast.walk(self.module):
            if isinstance(node, ast.ClassDef):
                kinds[node.name] = self._kind_of_bases(node.bases, kinds)
        return kinds

    def _kind_of_bases(self, bases: list[ast.expr], known: dict[str, str]) -> str:
        kinds = set()
        for base in bases:
            last, path = _base_name(base), self.path(base) or ""
            text = ast.unparse(base)
            if last == GAU_BASE:
                kinds.add("gau")
            elif last in known:
                kinds.add(known[last])
            elif path.startswith("torch.nn.") and last[:1].isupper() and last != "Parameter" \
                    or text in ("nn.Module", "torch.nn.Module", "Module"):
                kinds.add("module")
        return "gau" if "gau" in kinds else "module" if "module" in kinds else "other"

    # ---- running

    def run(self):
        self.check_top_level()
        self.check_imports()
        self.check_security()
        self.check_classes()
        if self.cls is not None:
            self.check_forward()
            self.check_init()
            self.check_children()
        self.check_gau_tests()

    # ---- top level

    def check_top_level(self):
        def harmless(stmt: ast.stmt) -> bool:
            if isinstance(stmt, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef,
                                 ast.Assign, ast.AnnAssign, ast.AugAssign, ast.Pass)):
                return True
            if isinstance(stmt, ast.Expr):
                return isinstance(stmt.value, ast.Constant)
            if isinstance(stmt, ast.If):
                test = ast.unparse(stmt.test)
                if "__name__" in test:
                    return False
                return all(harmless(s) for s in stmt.body + stmt.orelse)
            if isinstance(stmt, ast.Try):
                return all(harmless(s) for s in stmt.body + stmt.orelse + stmt.finalbody +
                           [s for h in stmt.handlers for s in h.body])
            return False

        for stmt in self.module.body:
            if not harmless(stmt):
                self.add("format.top-level-code", WARNING,
                         f"`{self.src(stmt)}` runs whenever the design module is loaded (at line {stmt.lineno}); "
                         "unit code should only define things",
                         "Move this code into the GAU's __init__ or _forward, or into a `@gau_test` function "
                         "(`@gau_test\\ndef test_my_unit(device=None, dtype=None): ...`); delete any "
                         "`if __name__ == \"__main__\":` block.", stmt.lineno)

    # ---- imports

    def _module_problem(self, module: str) -> tuple[str, str] | None:
        """(severity, reason) for importing a module, or None when it is fine."""
        root = module.split(".")[0]
        if module in RUNTIME_MODULES:
            return None
        if root in ("designs", "model_discovery"):
            return ERROR, (f"only the GAU runtime ({', '.join(sorted(RUNTIME_MODULES))}) may be imported from "
                           "the project")
        if root in FORBIDDEN_MODULES:
            return ERROR, FORBIDDEN_MODULES[root]
        reason = self._forbidden_attr(module)
        if reason:
            return ERROR, reason
        if root in WARN_MODULES:
            return WARNING, WARN_MODULES[root]
        if root in ALLOWED_MODULES:
            return None
        return ERROR, "it is not among the modules unit code may import"

    @staticmethod
    def _forbidden_attr(path: str) -> str | None:
        for prefix, reason in FORBIDDEN_ATTRS.items():
            if path == prefix or path.startswith(prefix + "."):
                return reason
        for pattern, reason in FORBIDDEN_ATTR_PATTERNS:
            if pattern.match(path):
                return reason
        return None

    def _import_finding(self, node: ast.stmt, module: str, severity: str, reason: str):
        allowed = ", ".join(m for m in ALLOWED_MODULES if m != "__future__")
        runtime = ", ".join(sorted(RUNTIME_MODULES))
        if severity == WARNING:
            self.add("format.import-warning", WARNING, f"`{self.src(node)}` imports {module}: {reason}",
                     f"Remove `{self.src(node)}` and write the operation with torch "
                     "(e.g. `x.view(B, T, H, D).transpose(1, 2)` instead of `rearrange(x, 'b t (h d) -> b h t d', h=H)`).",
                     node.lineno)
            return
        self.add("format.forbidden-import", ERROR,
                 f"`{self.src(node)}` imports {module}: {reason}. Unit code may import only: {allowed} "
                 f"(torch submodules included), and the GAU runtime ({runtime})",
                 f"Delete `{self.src(node)}` and implement what you needed with torch/math, e.g. "
                 "`import torch`, `from torch import nn`, `import torch.nn.functional as F`, `import math`. "
                 "A model unit needs no files, processes, network or environment.", node.lineno)

    def check_imports(self):
        for node in ast.walk(self.module):
            if isinstance(node, ast.Import):
                for a in node.names:
                    problem = self._module_problem(a.name)
                    if problem:
                        self._import_finding(node, a.name, *problem)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    self._import_finding(node, "." * node.level + (node.module or ""), ERROR,
                                         "unit code is not part of a package, so relative imports fail")
                    continue
                module = node.module or ""
                problem = self._module_problem(module)
                if problem:
                    self._import_finding(node, module, *problem)
                    if problem[0] == ERROR:
                        continue
                for a in node.names:
                    full = f"{module}.{a.name}"
                    if a.name == "*":
                        self.add("format.forbidden-import", ERROR,
                                 f"`{self.src(node)}` imports every name of {module}: the names it brings in "
                                 "cannot be checked",
                                 f"Import the names you use: `from {module} import name1, name2`, or "
                                 f"`import {module}`.", node.lineno)
                    elif self._forbidden_attr(full):
                        self._import_finding(node, full, ERROR, self._forbidden_attr(full))
                    elif module == "designs" and a.name not in ("gau", "lm") and a.name not in _runtime_names():
                        self._import_finding(node, full, ERROR, "only the GAU runtime may be imported from the "
                                                                "project")

    # ---- security

    def _forbidden(self, node: ast.AST, what: str, reason: str, fix: str | None = None):
        self.add("format.forbidden-call", ERROR,
                 f"`{self.src(node)}` uses {what}: {reason}. Unit code must not reach files, processes, the "
                 "network, the environment or the interpreter",
                 fix or f"Delete `{self.src(node)}`. A GAU only computes on tensors: build layers in __init__ "
                        "and compute Y from X in _forward with torch.", node.lineno)

    def _dynamic(self, node: ast.AST, what: str, fix: str):
        self.add("format.dynamic-access", ERROR, f"`{self.src(node)}` {what}", fix, node.lineno)

    def _is_module_like(self, node: ast.AST) -> bool:
        if isinstance(node, ast.Name) and node.id in ("__builtins__", "builtins"):
            return True
        return self.path(node) is not None

    def check_security(self):
        for node in ast.walk(self.module):
            if isinstance(node, ast.Attribute):
                self._check_attribute(node)
            elif isinstance(node, ast.Name):
                self._check_name(node)
            elif isinstance(node, ast.Call):
                self._check_call(node)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in ESCAPE_ATTRS \
                    and node.value.startswith("__"):
                self._dynamic(node, f"names the interpreter internal {node.value!r}",
                              "Delete it: unit code has no use for interpreter internals.")

    def _check_attribute(self, node: ast.Attribute):
        if node.attr in ESCAPE_ATTRS:
            self._dynamic(node, f"reaches `.{node.attr}`, an interpreter internal that leads to the globals "
                                "and builtins of other code",
                          f"Delete `{self.src(node)}`: unit code has no use for interpreter internals.")
            return
        if node.attr == "__dict__" and self._is_module_like(node.value):
            self._dynamic(node, "reads a module's namespace by name",
                          "Refer to what you need by its name, e.g. `torch.tanh`, `F.gelu`.")
            return
        parent = self.parents.get(node)
        if isinstance(parent, ast.Attribute) and parent.value is node:
            return  # the outermost attribute of a chain is checked
        path = self.path(node)
        if path:
            reason = self._forbidden_attr(path)
            if reason:
                self._forbidden(node, f"`{path}`", reason, self._attr_fix(node, path))

    def _attr_fix(self, node: ast.AST, path: str) -> str:
        if path.startswith(("torch.load", "torch.save", "torch.jit", "torch.hub", "numpy.")):
            return (f"Delete `{self.src(node)}`: a unit may not read or write files or download weights; "
                    "initialize parameters in __init__ (e.g. `nn.Parameter(torch.randn(n, **self.factory_kwargs))`).")
        if path.startswith("os.environ") or path.startswith("os.getenv"):
            return ("Delete it: pass settings as __init__ keyword arguments with defaults "
                    "(`def __init__(self, ..., my_setting: int = 4, **kwargs)`); they arrive from kwarg_all.")
        if path.startswith("sys.exit"):
            return "Raise an exception instead: `raise ValueError(\"what is wrong\")`."
        return None

    def _check_name(self, node: ast.Name):
        ident = node.id
        if ident in self.aliases:  # a name imported from a module: `from os import system`
            path = self.aliases[ident]
            reason = self._forbidden_attr(path)
            parent = self.parents.get(node)
            if reason and not (isinstance(parent, ast.Attribute) and parent.value is node):
                self._forbidden(node, f"`{path}`", reason, self._attr_fix(node, path))
            return
        if ident == "__builtins__":
            self._dynamic(node, "reaches the builtins module, where eval, exec and open live",
                          "Delete it: call the builtin you need by name (e.g. `len`, `range`, `min`).")
            return
        shadowed = ident in self.bound and ident not in ALWAYS_FORBIDDEN
        if ident in FORBIDDEN_BUILTINS and not shadowed and isinstance(node.ctx, ast.Load):
            parent = self.parents.get(node)
            called = isinstance(parent, ast.Call) and parent.func is node
            fix = None
            if ident in ("exit", "quit"):
                fix = "Raise an exception instead: `raise ValueError(\"what is wrong\")`."
            elif ident in ("eval", "exec", "compile"):
                fix = (f"Delete `{self.src(parent if called else node)}` and write the computation as ordinary "
                       "code; to choose between functions use a dict, e.g. `{'gelu': F.gelu, 'silu': F.silu}[name]`.")
            self._forbidden(parent if called else node, f"the builtin `{ident}`", FORBIDDEN_BUILTINS[ident], fix)
        elif ident == "open" and not shadowed:
            parent = self.parents.get(node)
            if not (isinstance(parent, ast.Call) and parent.func is node):
                self._forbidden(node, "the builtin `open`", "it opens files")

    def _check_call(self, node: ast.Call):
        func = node.func
        if isinstance(func, ast.Name) and func.id not in self.bound and func.id not in self.aliases:
            if func.id == "open":
                self._check_open(node)
            elif func.id in ("getattr", "setattr", "delattr", "hasattr") and node.args:
                self._check_getattr(node, func.id)
            elif func.id == "vars" and node.args and self._is_module_like(node.args[0]):
                self._dynamic(node, "reads a module's namespace by name",
                              "Refer to what you need by its name, e.g. `torch.tanh`, `F.gelu`.")

    def _check_open(self, node: ast.Call):
        mode = node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "mode"), None)
        if mode is None or (isinstance(mode, ast.Constant) and isinstance(mode.value, str)
                            and not _OPEN_WRITE_CHARS & set(mode.value)):
            self.add("format.file-read", WARNING,
                     f"`{self.src(node)}` opens a file for reading: a model unit reads no files (where the design "
                     "is checked and trained the file will not exist)",
                     "Delete the file access; put fixed values in the code or compute them in __init__, and take "
                     "settings as __init__ keyword arguments with defaults.", node.lineno)
            return
        shown = mode.value if isinstance(mode, ast.Constant) else ast.unparse(mode)
        self._forbidden(node, f"the builtin `open` with mode {shown!r}",
                        "it writes files" if isinstance(mode, ast.Constant) else "its mode cannot be read from the "
                                                                                 "code, so it may write files")

    def _check_getattr(self, node: ast.Call, fn: str):
        target, name = node.args[0], node.args[1] if len(node.args) > 1 else None
        literal = isinstance(name, ast.Constant) and isinstance(name.value, str)
        if literal and name.value in ESCAPE_ATTRS | {"__dict__"}:
            self._dynamic(node, f"reaches `{name.value}`, an interpreter internal",
                          "Delete it: unit code has no use for interpreter internals.")
            return
        if not self._is_module_like(target):
            if fn == "getattr" and name is not None and not literal and not self._is_self_like(target):
                self.add("format.dynamic-access", WARNING,
                         f"`{self.src(node)}` reads an attribute whose name is computed at run time",
                         "Prefer explicit attribute access or a dict of choices, e.g. "
                         "`{'gelu': F.gelu, 'silu': F.silu}[name]`.", node.lineno)
            return
        target_text = self.src(target)
        if fn in ("setattr", "delattr"):
            self._dynamic(node, f"changes the module `{target_text}` at run time (monkey-patching)",
                          "Delete it: unit code must not modify libraries or builtins.")
        elif not literal:
            direct = "by its name (e.g. `max(a, b)`)" if target_text in ("__builtins__", "builtins") else \
                f"directly (e.g. `{target_text}.tanh`)"
            self._dynamic(node, f"looks up a name computed at run time on `{target_text}`: this is how "
                                "forbidden functions are reached in disguise (e.g. `getattr(__builtins__, 'ev'+'al')`)",
                          f"Name the function {direct}, or choose among known functions with a dict: "
                          "`{'gelu': F.gelu, 'silu': F.silu}[name]`.")
        else:
            path = self.path(target)
            full = f"{path}.{name.value}" if path else None
            reason = self._forbidden_attr(full) if full else None
            if reason:
                self._forbidden(node, f"`{full}`", reason, self._attr_fix(node, full))
            elif target_text in ("__builtins__", "builtins") and name.value in FORBIDDEN_BUILTINS | {"open": 1}:
                self._forbidden(node, f"the builtin `{name.value}`", FORBIDDEN_BUILTINS.get(name.value, "it opens files"))

    @staticmethod
    def _is_self_like(node: ast.AST) -> bool:
        while isinstance(node, (ast.Attribute, ast.Subscript)):
            node = node.value
        return isinstance(node, ast.Name) and node.id == "self"

    # ---- classes

    def check_classes(self):
        top = [n for n in self.module.body if isinstance(n, ast.ClassDef)]
        gau_classes = [n for n in ast.walk(self.module) if isinstance(n, ast.ClassDef)
                       and self.class_kinds.get(n.name) == "gau" and n is not self.cls]
        if self.cls is None:
            others = [c for c in top if self.class_kinds.get(c.name) == "gau"]
            if len(others) == 1:
                other = others[0]
                self.add("format.gau-class", ERROR,
                         f"the unit is named {self.name} but its GAU class is `class {other.name}(...)`: the class "
                         "must carry the unit's name, which is how parents instantiate it",
                         f"Rename the class to `class {self.name}(GAUBase):` and every reference to {other.name} "
                         f"(in tests too).", other.lineno)
                gau_classes = [c for c in gau_classes if c is not other]
            else:
                self.add("format.gau-class", ERROR,
                         f"the code defines no class named {self.name}: each unit's code defines exactly one GAU "
                         "class named after the unit",
                         f"Define `class {self.name}(GAUBase):` with\n{_INIT_SNIPPET}\n\n"
                         "def _forward(self, X, **Z):\n    ...\n    return Y", 1)
        elif self.class_kinds.get(self.name) != "gau":
            bases = ", ".join(ast.unparse(b) for b in self.cls.bases) or "nothing"
            self.add("format.gau-class", ERROR,
                     f"`class {self.name}({bases})` does not derive from GAUBase: a unit must be a GAU",
                     f"Write `class {self.name}(GAUBase):` (imported with `from designs.gau import GAUBase, "
                     "gau_test`), define `_forward(self, X, **Z)` instead of `forward`, and call "
                     "`super().__init__(embed_dim, block_loc, kwarg_all)` in __init__.", self.cls.lineno)
        for other in gau_classes:
            self.add("format.one-gau-class", ERROR,
                     f"`class {other.name}({', '.join(ast.unparse(b) for b in other.bases)})` is a second GAU in "
                     f"unit {self.name}'s code: the code of a unit holds exactly one GAU class",
                     f"Move {other.name} out of this code: declare it as a child unit of {self.name} and "
                     f"implement it as its own unit; here, instantiate it in __init__ with "
                     f"`{_child_snippet(other.name, _snake(other.name))}`. Helper computations can be plain "
                     "functions.", other.lineno)
        for node in ast.walk(self.module):
            if isinstance(node, ast.ClassDef) and node is not self.cls and self.class_kinds.get(node.name) == "module":
                self._check_helper_module(node)

    def _check_helper_module(self, node: ast.ClassDef):
        methods = {m.name: m for m in node.body if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))}
        init = methods.get("__init__")
        params = set(sum(_param_names(init), [])) if init else set()
        disguised = "_forward" in methods or {"block_loc", "kwarg_all"} & params
        bases = ", ".join(ast.unparse(b) for b in node.bases)
        if disguised:
            self.add("format.helper-module", ERROR,
                     f"`class {node.name}({bases})` is a unit in disguise: it has the GAU interface "
                     "(`_forward`, block_loc or kwarg_all) but is a plain nn.Module inside unit "
                     f"{self.name}'s code",
                     f"Make {node.name} its own GAU unit (`class {node.name}(GAUBase)`), declare it as a child of "
                     f"{self.name}, and instantiate it with `{_child_snippet(node.name, _snake(node.name))}`; "
                     "or turn it into plain functions whose parameters live on "
                     f"{self.name}.", node.lineno)
        else:
            self.add("format.helper-module", WARNING,
                     f"`class {node.name}({bases})` is a helper nn.Module inside unit {self.name}: the unit tree "
                     "does not see it, so it cannot be reused, mutated or tested as a unit",
                     f"Prefer plain functions (parameters on {self.name}), or, if it is a component worth "
                     f"evolving on its own, a GAU unit declared as a child of {self.name}. A small fixed helper "
                     "may stay.", node.lineno)

    # ---- _forward

    def check_forward(self):
        cls = self.cls
        forward = _method(cls, "forward")
        assigned_forward = next((s for s in cls.body if isinstance(s, (ast.Assign, ast.AnnAssign)) and any(
            isinstance(t, ast.Name) and t.id == "forward"
            for t in (s.targets if isinstance(s, ast.Assign) else [s.target]))), None)
        _fwd = _method(cls, "_forward")
        for node in (forward, assigned_forward):
            if node is not None:
                rename = " (rename it)" if _fwd is None else ""
                self.add("format.forward-override", ERROR,
                         f"{self.name} overrides `forward` (line {node.lineno}): GAUBase.forward checks shapes, "
                         "hands _forward the Z variables it names and merges its Z updates; overriding it breaks "
                         "the unit contract",
                         f"Put the computation in `def _forward(self, X, **Z):`{rename}, returning Y (shaped like "
                         "X) or `(Y, {'name': value})` to add variables to Z; delete `forward`.", node.lineno)
        if _fwd is None:
            self.add("format.missing-forward", ERROR,
                     f"{self.name} has no `_forward` method: a GAU computes in `_forward(self, X, **Z)`",
                     "Add\n    def _forward(self, X, **Z):\n        # X: (batch, seq, embed_dim)\n"
                     "        Y = ...\n        return Y  # or (Y, {'var': value}) to write Z variables",
                     forward.lineno if forward else cls.lineno)
            return
        positional, _ = _param_names(_fwd)
        if isinstance(_fwd, ast.AsyncFunctionDef):
            self.add("format.forward-signature", ERROR, f"`async def _forward` makes {self.name}._forward a "
                                                        "coroutine, which never computes Y",
                     "Write `def _forward(self, X, **Z):` (no async).", _fwd.lineno)
        elif len(positional) < 2 and not _fwd.args.vararg:
            self.add("format.forward-signature", ERROR,
                     f"`def _forward({ast.unparse(_fwd.args)})` takes no input X: it is called as "
                     "`_forward(X, **named_Z_variables)`",
                     "Write `def _forward(self, X, **Z):`, naming any Z variable it reads as a parameter, e.g. "
                     "`def _forward(self, X, input_emb=None, **Z):`.", _fwd.lineno)
        self._check_returns(_fwd)

    def _check_returns(self, fwd: ast.FunctionDef):
        returns = [n for n in _own_nodes(fwd) if isinstance(n, ast.Return)]
        yields = [n for n in _own_nodes(fwd) if isinstance(n, (ast.Yield, ast.YieldFrom))]
        fix = ("End _forward with `return Y` (Y shaped like X) or `return Y, Z` / `return Y, {'var': value}` "
               "(a dict of Z updates).")
        for node in yields:
            self.add("format.forward-return", ERROR,
                     f"`{self.src(node)}` makes _forward a generator: it must return Y or (Y, Z_updates)", fix,
                     node.lineno)
        if not any(r.value is not None for r in returns) and not yields:
            self.add("format.forward-return", ERROR, f"{self.name}._forward never returns a value: it must "
                                                     "return Y or (Y, dict of Z updates)", fix, fwd.lineno)
        for node in returns:
            value = node.value
            if value is None or (isinstance(value, ast.Constant) and value.value is None):
                self.add("format.forward-return", ERROR,
                         f"`{self.src(node)}` in _forward returns no output: _forward must return Y or "
                         "(Y, dict of Z updates)", fix, node.lineno)
            elif isinstance(value, ast.Tuple):
                if any(isinstance(e, ast.Starred) for e in value.elts) or len(value.elts) != 2:
                    self.add("format.forward-return", ERROR,
                             f"`{self.src(node)}` returns a tuple of {len(value.elts)} values: _forward returns "
                             "Y or a pair (Y, dict of Z updates); extra outputs go into the dict",
                             "Write `return Y, {'name1': value1, 'name2': value2}` (the dict's entries are merged "
                             "into Z for the units after this one).", node.lineno)
                elif isinstance(value.elts[1], (ast.Constant, ast.List, ast.ListComp, ast.Tuple, ast.Set,
                                                ast.SetComp, ast.GeneratorExp, ast.JoinedStr, ast.Lambda)):
                    self.add("format.forward-return", ERROR,
                             f"`{self.src(node)}`: the second value, `{self.src(value.elts[1])}`, is not a dict: "
                             "it must be the dict of Z updates",
                             f"Return `{self.src(value.elts[0])}, Z` (the Z it received or a child returned), or "
                             f"`{self.src(value.elts[0])}, {{'name': value}}`, or just `{self.src(value.elts[0])}`.",
                             node.lineno)

    # ---- __init__

    def check_init(self):
        cls, init = self.cls, _method(self.cls, "__init__")
        if init is None:
            self.add("format.init-signature", ERROR,
                     f"{self.name} defines no __init__: the inherited one takes only (embed_dim, block_loc, "
                     "kwarg_all), but every unit is built with device, dtype and all hyperparameters as keywords",
                     f"Add\n{_INIT_SNIPPET}", cls.lineno)
            return
        positional, kwonly = _param_names(init)
        signature = f"def __init__({ast.unparse(init.args)})"
        problems = []
        if positional[1:4] != list(CHILD_ARGS):
            problems.append("its first parameters after self must be `embed_dim, block_loc, kwarg_all`")
        missing = [p for p in ("device", "dtype") if p not in positional + kwonly]
        if missing:
            problems.append(f"it lacks {' and '.join(missing)} (children and the LM pass device= and dtype=)")
        if init.args.kwarg is None:
            problems.append("it lacks **kwargs: the LM passes every hyperparameter of the design as a keyword, "
                            "and a unit must accept (and ignore) the ones it does not use")
        if problems:
            self.add("format.init-signature", ERROR, f"`{signature}`: " + "; ".join(problems),
                     "Use the GAU signature, keeping your hyperparameters (with defaults) before **kwargs:\n"
                     + _INIT_SNIPPET, init.lineno)
        args = init.args
        first_default = len(positional) - len(args.defaults)  # positional parameters from here have defaults
        required = [p for i, p in enumerate(positional) if 4 <= i < first_default]
        required += [a.arg for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is None]
        required = [r for r in required if r not in ("device", "dtype")] if not problems else []
        if required:
            self.add("format.init-signature", WARNING,
                     f"`{signature}`: {', '.join(required)} has no default, so the unit cannot be built unless "
                     "every design sets it in kwarg_all",
                     f"Give it a default: e.g. `{required[0]}: int = 4`.", init.lineno)
        self._check_super(init, positional)

    def _check_super(self, init: ast.FunctionDef, positional: list[str]):
        self_name = positional[0] if positional else "self"
        supers, others = _init_calls(init)
        if not supers:
            what = f"calls `{self.src(others[0])}` instead of the GAUBase initializer" if others else \
                "never calls the GAUBase initializer"
            self.add("format.super-init", ERROR, f"{self.name}.__init__ {what}: self.embed_dim, "
                                                 "self.block_loc and self.kwarg_all stay unset and no layer can be "
                                                 "assigned",
                     "Make these the first lines of __init__ (after the docstring):\n"
                     '    self.factory_kwargs = {"device": device, "dtype": dtype}\n'
                     "    super().__init__(embed_dim, block_loc, kwarg_all)",
                     (others[0].lineno if others else init.lineno))
        else:
            call = supers[0]
            explicit = isinstance(call.func.value, (ast.Name, ast.Attribute))  # GAUBase.__init__(self, ...)
            n_args = len(call.args) - (1 if explicit else 0) + len(call.keywords)
            starred = any(isinstance(a, ast.Starred) for a in call.args) or any(k.arg is None for k in call.keywords)
            if n_args != 3 and not starred:
                self.add("format.super-init", ERROR,
                         f"`{self.src(call)}` passes {n_args} argument(s): the GAUBase initializer takes "
                         "(embed_dim, block_loc, kwarg_all)",
                         "Write `super().__init__(embed_dim, block_loc, kwarg_all)`; device and dtype go in "
                         "`self.factory_kwargs`.", call.lineno)
            stmt = _top_stmt(init.body, call)
            for before in init.body[: init.body.index(stmt)] if stmt in init.body else []:
                for node in ast.walk(before):
                    if isinstance(node, (ast.Assign, ast.AnnAssign)):
                        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                        if any(_self_attr(t, self_name) for t in targets) and node.value is not None and \
                                self._builds_module(node.value):
                            self.add("format.super-init-order", ERROR,
                                     f"`{self.src(node)}` assigns a layer before `{self.src(call)}` (line "
                                     f"{call.lineno}): PyTorch refuses to register modules and parameters before "
                                     "the base initializer has run",
                                     "Move the initializer call up: only `self.factory_kwargs = {...}` may come "
                                     "before `super().__init__(embed_dim, block_loc, kwarg_all)`.", node.lineno)
        uses = [n for n in ast.walk(self.cls) if _self_attr(n, self_name, "factory_kwargs")]
        sets = [n for n in uses if isinstance(self.parents.get(n), (ast.Assign, ast.AnnAssign))
                and n in (self.parents[n].targets if isinstance(self.parents[n], ast.Assign)
                          else [self.parents[n].target])]
        if uses and not sets:
            self.add("format.factory-kwargs", ERROR,
                     f"`{self.src(uses[0])}` is used but {self.name}.__init__ never sets it "
                     "(it could not be added automatically)",
                     'Set it first thing in __init__: `self.factory_kwargs = {"device": device, "dtype": dtype}`, '
                     "with device=None and dtype=None in the signature.", uses[0].lineno)

    def _builds_module(self, value: ast.AST) -> bool:
        for node in ast.walk(value):
            if isinstance(node, ast.Call):
                path = self.path(node.func) or ""
                last = _base_name(node.func)
                if path.startswith("torch.nn.") and last[:1].isupper():
                    return True
                if isinstance(node.func, ast.Name) and (self.class_kinds.get(last) in ("gau", "module")
                                                        or self._gau_looking(node)):
                    return True
        return False

    # ---- children

    def _kw_provided(self, call: ast.Call, env: dict[str, ast.AST]) -> set[str]:
        """What a call passes: argument names, 'factory', 'hyper' (**kwarg_all), '?' (unknown **)."""
        given: set[str] = set()
        names = list(CHILD_ARGS) + ["device", "dtype"]
        for i, arg in enumerate(call.args):
            if isinstance(arg, ast.Starred):
                given.add("?")
            elif i < len(names):
                given.add(names[i])
        for kw in call.keywords:
            if kw.arg is not None:
                given.add(kw.arg)
            else:
                given |= self._unpacked(kw.value, env, 0)
        return given

    def _unpacked(self, value: ast.AST, env: dict[str, ast.AST], depth: int) -> set[str]:
        if depth > 5:
            return {"?"}
        if isinstance(value, ast.Attribute) and isinstance(value.value, ast.Name):
            if value.attr == "factory_kwargs":
                return {"device", "dtype"}
            if value.attr == "kwarg_all":
                return {"hyper"}
        if isinstance(value, ast.Name):
            if value.id == "kwarg_all":
                return {"hyper"}
            if value.id in env:
                return self._unpacked(env[value.id], env, depth + 1)
            return {"?"}
        if isinstance(value, ast.Dict):
            out = set()
            for k, v in zip(value.keys, value.values):
                if k is None:
                    out |= self._unpacked(v, env, depth + 1)
                elif isinstance(k, ast.Constant) and isinstance(k.value, str):
                    out.add(k.value)
                else:
                    out.add("?")
            return out
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "dict":
            out = set()
            for arg in value.args:
                out |= self._unpacked(arg, env, depth + 1)
            for kw in value.keywords:
                out |= {kw.arg} if kw.arg else self._unpacked(kw.value, env, depth + 1)
            return out
        if isinstance(value, ast.BinOp) and isinstance(value.op, ast.BitOr):
            return self._unpacked(value.left, env, depth + 1) | self._unpacked(value.right, env, depth + 1)
        return {"?"}

    def _local_env(self, func: ast.AST | None) -> dict[str, ast.AST]:
        env: dict[str, ast.AST] = {}
        if func is None:
            return env
        for node in ast.walk(func):
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                env[node.targets[0].id] = node.value
        return env

    def _gau_looking(self, call: ast.Call) -> bool:
        """Whether a call instantiates a GAU unit (another unit of the design)."""
        if not isinstance(call.func, ast.Name):
            return False
        ident = call.func.id
        if ident == self.name:
            return False
        if self.declared is not None and ident in self.declared:
            return True
        if ident in self.class_kinds or ident in self.aliases or ident in _runtime_names():
            return False
        if ident not in self.bound and ident not in _BUILTIN_NAMES and ident[:1].isupper():
            return True
        if ident in self.bound or ident in _BUILTIN_NAMES:
            return False
        method = self.enclosing(call, (ast.FunctionDef, ast.AsyncFunctionDef))
        given = self._kw_provided(call, self._local_env(method))
        return bool({"kwarg_all", "block_loc"} & given)

    def check_children(self):
        cls = self.cls
        methods = {m.name: m for m in cls.body if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))}
        init, fwd = methods.get("__init__"), methods.get("_forward")
        instantiations = [n for n in ast.walk(self.module) if isinstance(n, ast.Call) and self._gau_looking(n)
                          and not self.in_test(n)]
        child_attrs: dict[str, set[str]] = {}  # attribute of self -> the children it holds
        attr_lines: dict[str, int] = {}
        instantiated: set[str] = set()
        in_forward: set[str] = set()
        for call in instantiations:
            child = call.func.id
            instantiated.add(child)
            method = self.enclosing(call, (ast.FunctionDef, ast.AsyncFunctionDef))
            if self.declared is not None and child not in self.declared:
                self.add("format.child-undeclared", ERROR,
                         f"`{self.src(call)}` instantiates {child}, which is not a declared child of "
                         f"{self.name} (declared: {', '.join(self.declared) or 'none'})",
                         f"Declare {child} as a child of {self.name} (a UnitDecl with what it must do, and its "
                         "Z inputs/outputs), or, if you meant one of the declared units, use its exact name. A "
                         "helper computation that is not a unit should be a plain function.", call.lineno)
            if not (cls.lineno <= call.lineno <= cls.end_lineno):
                continue
            if method is fwd and fwd is not None:
                in_forward.add(child)
                self.add("format.child-in-forward", ERROR,
                         f"`{self.src(call)}` builds a new {child} inside _forward: a fresh, untrained unit on "
                         "every call, whose parameters the optimizer never sees",
                         f"Build it once in __init__ (`{_child_snippet(child, _snake(child))}`) and call it in "
                         f"_forward: `Y, Z = self.{_snake(child)}(X, **Z)`.", call.lineno)
                continue
            self._check_child_args(call, method)
            attr = self._holding_attr(call, method)
            if attr is None:
                self.add("format.child-unused", ERROR,
                         f"`{self.src(call)}` builds a {child} but does not store it as an attribute of self: it "
                         "is never registered, trained or called",
                         f"Store it: `{_child_snippet(child, _snake(child))}` and call it in _forward with "
                         f"`Y, Z = self.{_snake(child)}(X, **Z)`.", call.lineno)
                continue
            child_attrs.setdefault(attr, set()).add(child)
            attr_lines.setdefault(attr, call.lineno)
        reachable = self._reachable(methods)
        used_attrs, dynamic = self._used_attrs(methods, reachable)
        if not dynamic:
            for attr, children in child_attrs.items():
                if attr not in used_attrs and attr != "?":  # "?": set with a computed name
                    kids = ", ".join(sorted(children))
                    self.add("format.child-unused", ERROR,
                             f"self.{attr} holds {kids} (line {attr_lines[attr]}) but _forward never uses it: its "
                             "parameters get no gradient and the child has no effect",
                             f"Call it in _forward, e.g. `H, Z = self.{attr}(X, **Z)`, or remove it (and its "
                             "declaration).", attr_lines[attr])
        if self.declared is not None:
            for child in self.declared:
                if child == self.name or child in in_forward:
                    continue
                if child not in instantiated:
                    line = init.lineno if init is not None else cls.lineno
                    self.add("format.child-unused", ERROR,
                             f"{child} is declared as a child of {self.name} but the code never instantiates it",
                             f"In __init__: `{_child_snippet(child, _snake(child))}`; in _forward: "
                             f"`Y, Z = self.{_snake(child)}(X, **Z)`. Or, if {self.name} does not need {child}, "
                             "remove the declaration.", line)
        self._check_child_calls(methods, child_attrs)

    def _check_child_args(self, call: ast.Call, method: ast.AST | None):
        child = call.func.id
        given = self._kw_provided(call, self._local_env(method))
        unknown = "?" in given
        missing = [a for a in CHILD_ARGS if a not in given]
        if not {"device", "dtype"} <= given:
            missing.append("**self.factory_kwargs (device and dtype)")
        fix = (f"Instantiate it as `{child}(embed_dim=self.embed_dim, block_loc=self.block_loc, "
               "kwarg_all=self.kwarg_all, **self.factory_kwargs, **self.kwarg_all)`; to change one of its "
               "hyperparameters, set it in self.kwarg_all before this line, or pass it by keyword "
               "instead of in **self.kwarg_all.")
        if missing and not unknown:
            self.add("format.child-args", ERROR,
                     f"`{self.src(call)}` does not pass {', '.join(missing)}: every unit is built with "
                     "embed_dim, block_loc, kwarg_all, device and dtype", fix, call.lineno)
        elif "hyper" not in given and not unknown:
            self.add("format.child-args", WARNING,
                     f"`{self.src(call)}` does not pass **self.kwarg_all: {child} will not receive the design's "
                     "hyperparameters and runs with its defaults", fix, call.lineno)

    def _holding_attr(self, call: ast.Call, method: ast.AST | None) -> str | None:
        """The attribute of self that ends up holding what `call` builds, or None."""
        self_name = "self"
        if isinstance(method, (ast.FunctionDef, ast.AsyncFunctionDef)) and method.args.args:
            self_name = method.args.args[0].arg
        node, inside_container, registered = call, False, False
        while node is not None and not isinstance(node, ast.stmt):
            parent = self.parents.get(node)
            if isinstance(parent, (ast.List, ast.Tuple, ast.ListComp, ast.Dict, ast.DictComp, ast.SetComp,
                                   ast.GeneratorExp, ast.Set)):
                inside_container = True
            if isinstance(parent, ast.Call) and _base_name(parent.func) in ("ModuleList", "ModuleDict",
                                                                              "Sequential"):
                registered = True
            if isinstance(parent, ast.Call) and isinstance(parent.func, ast.Attribute) and \
                    parent.func.attr in ("append", "extend", "insert", "add_module", "register_module") and \
                    _self_attr(parent.func.value, self_name):
                return parent.func.value.attr
            if isinstance(parent, ast.Call) and isinstance(parent.func, ast.Attribute) and \
                    parent.func.attr in ("add_module", "register_module") and \
                    isinstance(parent.func.value, ast.Name) and parent.func.value.id == self_name:
                first = parent.args[0] if parent.args else None
                return first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else "?"
            if isinstance(parent, ast.Call) and isinstance(parent.func, ast.Name) and parent.func.id == "setattr" \
                    and parent.args and isinstance(parent.args[0], ast.Name) and parent.args[0].id == self_name:
                name = parent.args[1] if len(parent.args) > 1 else None
                return name.value if isinstance(name, ast.Constant) and isinstance(name.value, str) else "?"
            node = parent
        stmt = node
        if not isinstance(stmt, (ast.Assign, ast.AnnAssign)):
            return None
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
        attr = next((t.attr for t in targets if _self_attr(t, self_name)), None)
        if attr is None:  # a local first: `mixer = Child(...)`, then `self.mixer = mixer`
            local = next((t.id for t in targets if isinstance(t, ast.Name)), None)
            if local is None or method is None:
                return None
            for other in ast.walk(method):
                if isinstance(other, ast.Assign) and any(isinstance(n, ast.Name) and n.id == local
                                                         for n in ast.walk(other.value)):
                    attr = next((t.attr for t in other.targets if _self_attr(t, self_name)), None)
                    if attr:
                        return attr
            return None
        if inside_container and not registered:
            self.add("format.child-not-registered", ERROR,
                     f"`{self.src(stmt)}` keeps units in a plain Python container: PyTorch does not register "
                     "them, so their parameters are not trained, moved to the device or saved",
                     f"Wrap them: `self.{attr} = nn.ModuleList([...])` (or nn.ModuleDict({{...}})).", stmt.lineno)
        return attr

    def _reachable(self, methods: dict[str, ast.AST]) -> set[str]:
        """_forward and the methods of the class it calls (transitively), __init__ excluded."""
        seen: set[str] = set()
        stack = ["_forward"]
        while stack:
            name = stack.pop()
            if name in seen or name not in methods or name == "__init__":
                continue
            seen.add(name)
            method = methods[name]
            self_name = method.args.args[0].arg if method.args.args else "self"
            for node in ast.walk(method):
                if _self_attr(node, self_name) and node.attr in methods:
                    stack.append(node.attr)
        return seen

    def _used_attrs(self, methods: dict, reachable: set[str]) -> tuple[set[str], bool]:
        """Attributes of self read by the methods _forward reaches; True when some are read dynamically."""
        used, dynamic = set(), False
        for name in reachable:
            method = methods[name]
            self_name = method.args.args[0].arg if method.args.args else "self"
            for node in ast.walk(method):
                if _self_attr(node, self_name):
                    used.add(node.attr)
                    if node.attr in ("children", "modules", "named_children", "named_modules", "_modules"):
                        dynamic = True
                elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr" \
                        and node.args and isinstance(node.args[0], ast.Name) and node.args[0].id == self_name:
                    name_arg = node.args[1] if len(node.args) > 1 else None
                    if isinstance(name_arg, ast.Constant) and isinstance(name_arg.value, str):
                        used.add(name_arg.value)
                    else:
                        dynamic = True
        return used, dynamic

    def _check_child_calls(self, methods: dict, child_attrs: dict[str, set[str]]):
        for mname, method in methods.items():
            if mname == "__init__" or not child_attrs:
                continue
            self_name = method.args.args[0].arg if method.args.args else "self"
            z_default = method.args.kwarg.arg if method.args.kwarg else "Z"

            def holds_child(expr: ast.AST) -> str | None:
                if isinstance(expr, ast.Subscript):
                    expr = expr.value
                if _self_attr(expr, self_name) and expr.attr in child_attrs:
                    return expr.attr
                return None

            aliases: dict[str, str] = {}
            for node in ast.walk(method):
                if isinstance(node, (ast.For, ast.comprehension)):
                    attr = next((holds_child(n) for n in ast.walk(node.iter) if holds_child(n)), None)
                    if attr:
                        aliases.update({n.id: attr for n in ast.walk(node.target) if isinstance(n, ast.Name)})
                elif isinstance(node, ast.Assign) and len(node.targets) == 1 and \
                        isinstance(node.targets[0], ast.Name) and holds_child(node.value):
                    aliases[node.targets[0].id] = holds_child(node.value)
            for node in ast.walk(method):
                if not isinstance(node, ast.Call):
                    continue
                attr = holds_child(node.func) or (aliases.get(node.func.id) if isinstance(node.func, ast.Name)
                                                  else None)
                if attr is None:
                    continue
                self._check_z(node, attr, z_default, method)

    def _check_z(self, call: ast.Call, attr: str, z_default: str, method: ast.AST):
        star = [k.value for k in call.keywords if k.arg is None]
        z_name = next((v.id for v in star if isinstance(v, ast.Name)), z_default)
        problems = []
        if not star:
            problems.append("does not pass Z (`**Z`)")
        parent = self.parents.get(call)
        threads = isinstance(parent, ast.Return) and parent.value is call or (
            isinstance(parent, ast.Assign) and parent.value is call and len(parent.targets) == 1
            and isinstance(parent.targets[0], (ast.Tuple, ast.List)) and len(parent.targets[0].elts) == 2
            and isinstance(parent.targets[0].elts[1], ast.Name) and parent.targets[0].elts[1].id == z_name)
        if not threads:
            problems.append(f"does not take back the Z it returns (as `Y, {z_name} = ...`)")
        if problems:
            x = self.src(call.args[0]) if call.args else "X"
            signature = "" if method.args.kwarg else \
                f" (and add **{z_default} to `def {method.name}(...)`)"
            self.add("format.z-threading", WARNING,
                     f"`{self.src(call)}` {' and '.join(problems)}. {_Z_EXPLAINED}",
                     f"Write `Y, {z_name} = self.{attr}({x}, **{z_name})`{signature}, then use Y.", call.lineno)

    # ---- unit tests

    def check_gau_tests(self):
        for test in self.tests:
            positional, kwonly = _param_names(test)
            params = positional + kwonly
            missing = [p for p in ("device", "dtype") if p not in params] if test.args.kwarg is None else []
            a = test.args
            defaults_from = len(a.posonlyargs + a.args) - len(a.defaults)
            required = [p for i, p in enumerate(positional) if i < defaults_from and p not in ("device", "dtype")]
            required += [x.arg for x, d in zip(a.kwonlyargs, a.kw_defaults) if d is None
                         and x.arg not in ("device", "dtype")]
            if missing or required:
                what = []
                if missing:
                    what.append(f"does not accept {' and '.join(missing)}")
                if required:
                    what.append(f"requires {', '.join(required)}, which the test runner never passes")
                self.add("format.gau-test", ERROR,
                         f"unit test `def {test.name}({ast.unparse(test.args)})` {' and '.join(what)}: "
                         "the runner calls it as test(device=..., dtype=...)",
                         f"Write `@gau_test\\ndef {test.name}(device=None, dtype=None):` and build tensors and "
                         "units with device=device, dtype=dtype.", test.lineno)
