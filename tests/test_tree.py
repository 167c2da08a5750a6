"""UnitTree: JSON, fingerprints, validation, rendering, edits and composition."""

import json
import subprocess
import sys

import pytest
import torch

from designs.seeds import library_units, load_seed, seed_names
from designs.tree import TreeError, UnitTree
from helpers import composed_lm, in_memory_lm

NEW_CHILD_CODE = '''
from designs.gau import GAUBase


class GeluMLP(GAUBase):
    """An MLP that delegates to a gate it declares."""

    def __init__(self, embed_dim, block_loc, kwarg_all, device=None, dtype=None, **kwargs):
        self.factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__(embed_dim, block_loc, kwarg_all)
        self.gate = ShortGate(embed_dim=embed_dim, block_loc=block_loc, kwarg_all=kwarg_all, **self.factory_kwargs)

    def _forward(self, X, **Z):
        Y, Z = self.gate(X, **Z)
        return Y
'''


@pytest.mark.parametrize("name", seed_names())
def test_json_round_trip_is_lossless(name):
    tree = load_seed(name)
    again = UnitTree.from_json(json.dumps(json.loads(tree.to_json())))
    assert again.to_dict() == tree.to_dict()
    assert again.fingerprint() == tree.fingerprint()


def test_fingerprint_ignores_formatting_comments_and_docstrings():
    tree = load_seed("gpt2")
    unit = tree.units["GeluMLP"]
    noisy = unit.code.replace("    def _forward", "    # a comment\n\n    def _forward")
    noisy = noisy.replace('"""The GPT-2 feed-forward layer', '"""Reworded docs. The GPT-2 feed-forward layer')
    noisy = noisy.replace("return self.fc2(", "return   self.fc2(")
    edited = tree.replace("GeluMLP", noisy)
    assert edited.units["GeluMLP"].code != unit.code
    assert edited.fingerprint() == tree.fingerprint()
    changed = tree.replace("GeluMLP", unit.code.replace('approximate="tanh"', 'approximate="none"'))
    assert changed.fingerprint() != tree.fingerprint()


def test_view_shows_every_unit_and_its_args():
    view = load_seed("llama").view()
    for unit in ("LlamaBlock", "MHA", "RMSNorm", "SwiGLU"):
        assert unit in view
    assert "n_heads=4" in view and view.splitlines()[0].startswith("llama (root LlamaBlock")


@pytest.mark.parametrize("name", seed_names())
def test_composed_module_equals_in_memory_model(name):
    tree = load_seed(name)
    torch.manual_seed(0)
    reference = in_memory_lm(tree)
    composed = composed_lm(tree)
    composed.load_state_dict(reference.state_dict())
    tokens = torch.randint(0, 256, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(composed(tokens), reference(tokens), rtol=0, atol=0)


def test_composed_module_runs_standalone(tmp_path):
    path = tmp_path / "gpt2_design.py"
    path.write_text(load_seed("gpt2").compose())
    source = path.read_text()
    assert "from designs" not in source and "model_discovery" not in source
    done = subprocess.run([sys.executable, "-I", str(path)], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "non-embedding parameters" in done.stdout


def test_composed_module_keeps_unit_tests():
    from designs.gau import find_gau_tests
    from designs.model import load_design_module

    module = load_design_module(load_seed("gpt2"))
    tests = find_gau_tests(module.__dict__)
    assert {"test_mha_is_causal", "test_gpt2_block_shapes"} <= set(tests)
    for test in tests.values():
        test(device="cpu", dtype=torch.float32)
    assert not find_gau_tests(load_design_module(load_seed("gpt2"), load_seed("gpt2").compose(False)).__dict__)


def test_replace_with_a_new_declared_child_leaves_a_placeholder():
    from designs.gau import UnitDecl

    tree = load_seed("gpt2")
    edited = tree.replace("GeluMLP", NEW_CHILD_CODE, declares={"ShortGate": UnitDecl("ShortGate", "a gate")})
    assert edited.units["GeluMLP"].children == ["ShortGate"]
    assert edited.missing() == ["ShortGate"]
    assert "ShortGate [declared, not implemented]: a gate" in edited.view()
    with pytest.raises(TreeError, match="child 'ShortGate' is declared but never implemented"):
        edited.compose()
    assert tree.units["GeluMLP"].children == []  # trees are values


def test_graft_swaps_a_subtree_across_designs():
    gpt2, llama = load_seed("gpt2"), load_seed("llama")
    grafted = gpt2.graft(llama.subtree("SwiGLU"), at="GeluMLP")
    assert "SwiGLU" not in grafted.units and "class GeluMLP(GAUBase)" in grafted.units["GeluMLP"].code
    assert "gate_proj" in grafted.units["GeluMLP"].code
    model = composed_lm(grafted.validate())
    assert model.blocks[0].mlp.gate_proj.out_features % 16 == 0
    assert model(torch.randint(0, 256, (1, 8))).shape == (1, 8, 256)


def test_graft_refuses_a_clashing_unit():
    gpt2, llama = load_seed("gpt2"), load_seed("llama")
    other = llama.subtree("LlamaBlock")
    other.units["MHA"].code = other.units["MHA"].code.replace("rope_base: float = 10000.0", "rope_base: float = 500.0")
    with pytest.raises(TreeError, match="both trees have a unit 'MHA' with different code"):
        gpt2.graft(other, at="GeluMLP")


def _broken(mutate):
    data = load_seed("gpt2").to_dict()
    mutate(data)
    return UnitTree.from_dict(data)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(root="Nope"), "root 'Nope' is not among the units"),
    (lambda d: d["units"]["MHA"].update(code="class MHA(GAUBase:\n    pass\n"), r"unit MHA: code does not parse: line 1"),
    (lambda d: d["units"]["MHA"].update(code="x = 1\n"), "unit MHA: code defines no class named MHA"),
    (lambda d: d["units"]["GPT2Block"]["children"].remove("MHA"), "instantiates MHA without listing it as a child"),
    (lambda d: (d["units"].pop("MHA"), d["declares"].pop("MHA")), "child 'MHA' is neither implemented nor declared"),
    (lambda d: d["units"].pop("MHA"), "child 'MHA' is declared but never implemented"),
    (lambda d: d["units"]["GeluMLP"]["children"].append("Ghost"), "child 'Ghost' is neither implemented nor declared"),
    (lambda d: d["units"]["GeluMLP"]["children"].append("MHA"), "unit GeluMLP: lists child 'MHA' but its code never"),
])
def test_validation_names_the_problem_and_the_place(mutate, message):
    with pytest.raises(TreeError, match=message):
        _broken(mutate).validate()


def test_cycles_are_found():
    tree = load_seed("gpt2")
    looped = tree.to_dict()
    looped["units"]["GeluMLP"]["code"] = tree.units["GeluMLP"].code.replace(
        "self.fc2 = nn.Linear", "self.inner = GPT2Block(embed_dim, block_loc, kwarg_all)\n        self.fc2 = nn.Linear")
    looped["units"]["GeluMLP"]["children"] = ["GPT2Block"]
    with pytest.raises(TreeError, match="cycle: GPT2Block -> GeluMLP -> GPT2Block"):
        UnitTree.from_dict(looped).validate()


@pytest.mark.parametrize("text, message", [
    ("{not json", "not valid JSON: line 1"),
    ('{"format": "genesys.unittree/1", "name": "x", "root": "A"}', "missing field 'units'"),
    ('{"format": "genesys.unittree/1", "name": "x", "root": "A", "units": {"A": {"code": 3}}}', r"units\.A\.code: expected str"),
    ('{"format": "other/2", "name": "x"}', "format 'other/2' is not"),
])
def test_malformed_json_gets_one_clear_error(text, message):
    with pytest.raises(TreeError, match=message):
        UnitTree.from_json(text, where="design.json")


def test_two_units_defining_one_name_differently_cannot_compose():
    tree = load_seed("gpt2")
    data = tree.to_dict()
    data["units"]["GeluMLP"]["code"] += "\n\ndef apply_rotary(x, cos, sin):\n    return x\n"
    with pytest.raises(TreeError, match="defines top-level 'apply_rotary', which unit (MHA|GeluMLP) defines differently"):
        UnitTree.from_dict(data).compose()


def test_unit_library_units_are_documented():
    from designs.seeds import unit_doc

    for name, code in library_units().items():
        assert len(unit_doc(name, code)) > 60, f"unit {name} needs a docstring agents can use"
