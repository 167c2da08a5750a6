"""Designs in the Genesys `implementation.json` layout: import, run, export, and bad input."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from designs.gau import UnitSpec, find_gau_tests
from designs.genesys_format import from_genesys, from_genesys_json, load_genesys, to_genesys
from designs.model import load_design_module
from designs.seeds import load_seed
from designs.tree import TreeError, UnitTree

DATA = Path(__file__).parent / "data" / "genesys"
EXAMPLES = ["tiny_gpt", "conv_gate"]


def raw(name: str) -> dict:
    return json.loads((DATA / f"{name}.json").read_text())


@pytest.fixture(scope="module", params=EXAMPLES)
def example(request):
    """(file dict, imported tree, loaded design module) of one example design."""
    data = raw(request.param)
    tree = from_genesys(data, where=f"{request.param}.json")
    return data, tree, load_design_module(tree)


# ---------------------------------------------------------------- the examples import and run


def test_example_is_a_complete_tree(example):
    data, tree, _ = example
    assert tree.validate(complete=True) is tree
    assert tree.name == data["implementation"]["name"] and tree.root == data["implementation"]["root"]
    assert tree.missing() == [] and sorted(tree.reachable()) == sorted(tree.units)
    for name, unit in tree.units.items():
        node = data["implementation"]["units"][name]
        assert unit.spec == UnitSpec(**json.loads(node["spec"]))
        assert unit.tests == node["gautests"] and unit.children == node["children"]
        assert "CHILDREN_DECLARATIONS" in node["code"] and "CHILDREN_DECLARATIONS" not in unit.code
    assert tree.meta["genesys"]["status"] == "implemented"
    assert tree.meta["genesys"]["history"] == data["history"]


def test_example_runs_as_a_causal_language_model(example):
    _, _, module = example
    torch.manual_seed(0)
    model = module.build_model(d_model=32, n_block=2)
    tokens = torch.randint(0, 256, (2, 16))
    logits = model(tokens)
    assert logits.shape == (2, 16, 256) and torch.isfinite(logits).all()
    changed = tokens.clone()
    changed[:, 10:] = (changed[:, 10:] + 1) % 256
    later = model(changed)
    assert torch.allclose(logits[:, :10], later[:, :10], atol=1e-5)
    assert not torch.allclose(logits[:, 10:], later[:, 10:])


def test_example_unit_tests_pass(example):
    data, _, module = example
    tests = find_gau_tests(module.__dict__)
    expected = {f"test_{unit}_{test}" for unit, node in data["implementation"]["units"].items()
                for test in node["gautests"]}
    assert set(tests) == expected
    torch.manual_seed(0)
    for test in tests.values():
        test()


# ---------------------------------------------------------------- round trips


def test_export_gives_back_the_file(example):
    data, tree, _ = example
    assert to_genesys(tree) == data
    text = (DATA / f"{data['implementation']['name']}.json").read_text()
    assert json.dumps(to_genesys(tree), indent=2, ensure_ascii=False) + "\n" == text


def test_unit_tree_json_round_trip_keeps_everything(example):
    data, tree, _ = example
    again = UnitTree.from_json(tree.to_json())
    assert again.to_dict() == tree.to_dict()
    assert to_genesys(again) == data


def test_import_and_export_copy_their_data():
    data = raw("tiny_gpt")
    tree = from_genesys(data)
    tree.meta["genesys"]["history"].clear()
    assert data == raw("tiny_gpt")
    exported = to_genesys(tree)
    exported["implementation"]["units"]["TinyNorm"]["args"]["eps"] = 1.0
    assert tree.units["TinyNorm"].args["eps"] == 1e-5


def test_bare_tree_imports():
    data = raw("conv_gate")
    tree = from_genesys(data["implementation"])
    exported = to_genesys(tree)
    assert exported["implementation"] == data["implementation"]
    assert exported["status"] == "implemented" and exported["history"] == []


def test_older_and_looser_layouts_round_trip():
    data = raw("tiny_gpt")
    impl = data["implementation"]
    rope = impl["units"]["RotaryEmb"]
    impl["root"] = {"spec": impl["units"]["TinyBlock"]["spec"], "children": ["TinyNorm"]}  # a node, not a name
    rope["spec"] = json.loads(rope["spec"])  # dicts where Genesys writes JSON strings
    impl["declares"]["TinyMLP"] = json.loads(impl["declares"]["TinyMLP"])
    impl["declares"]["TinyNorm"] = impl["declares"]["TinyNorm"].replace(",", ", ")  # other JSON spelling
    rope["desc"] = None
    rope["gautests"] = None
    del rope["reuse_from"], impl["units"]["TinyMLP"]["design_traces"], impl["proposal_traces"]
    data["history"][0].pop("rounds")
    data["extra_field"] = {"kept": True}
    tree = from_genesys(data)
    assert tree.root == "TinyBlock"
    assert tree.units["RotaryEmb"].desc == "" and tree.units["RotaryEmb"].tests == {}
    assert tree.units["RotaryEmb"].spec.outputs == ["output_emb"]
    assert to_genesys(tree) == data
    assert to_genesys(UnitTree.from_dict(tree.to_dict())) == data


def test_edits_are_exported_not_the_stale_original():
    data = raw("tiny_gpt")
    tree = from_genesys(data)
    code = tree.units["TinyMLP"].code.replace("F.gelu", "F.silu")
    edited = tree.replace("TinyMLP", code)
    edited.units["TinyNorm"].spec.document = "new words"
    out = to_genesys(edited)["implementation"]["units"]
    assert out["TinyMLP"]["code"] == code and "CHILDREN_DECLARATIONS" not in code
    assert json.loads(out["TinyNorm"]["spec"])["document"] == "new words"
    assert out["TinyBlock"] == data["implementation"]["units"]["TinyBlock"]  # untouched units as read


def test_design_made_here_exports_in_genesys_layout():
    seed = load_seed("gpt2")
    exported = to_genesys(seed)
    assert exported["status"] == "implemented" and exported["history"] == []
    impl = exported["implementation"]
    assert impl["root"] == seed.root and set(impl["units"]) == set(seed.units)
    mha = impl["units"]["MHA"]
    assert mha["spec"] == json.dumps(seed.units["MHA"].spec.to_dict(), separators=(",", ":"))
    assert mha["requirements"] == seed.declares["MHA"].requirements
    assert list(mha) == ["spec", "code", "args", "desc", "review", "rating", "children", "gautests",
                         "suggestions", "design_traces", "requirements", "reuse_from"]
    back = from_genesys(exported)
    assert {n: u.to_dict() for n, u in back.units.items()} == {n: u.to_dict() for n, u in seed.units.items()}
    assert to_genesys(back) == exported


def test_load_genesys_reads_a_file(tmp_path):
    path = tmp_path / "implementation.json"
    path.write_text((DATA / "conv_gate.json").read_text())
    assert load_genesys(path).root == "ConvGateBlock"
    path.write_text("{\"status\": ")
    with pytest.raises(TreeError, match=f"^{path}: not valid JSON: line 1 column 12"):
        load_genesys(path)


# ---------------------------------------------------------------- bad input: one line, what and where


def _broken(edit) -> dict:
    data = raw("tiny_gpt")
    edit(data, data["implementation"], data["implementation"]["units"])
    return data


def _line_of(code: str, text: str) -> int:
    return next(i for i, line in enumerate(code.splitlines(), 1) if text in line)


MLP_CODE = raw("tiny_gpt")["implementation"]["units"]["TinyMLP"]["code"]
BAD_INPUTS = {
    "not an object": ([1, 2], "expected a JSON object, got list"),
    "no implementation": ({"status": "implemented", "history": []}, "missing 'implementation'"),
    "implementation not an object": (_broken(lambda d, i, u: d.update(implementation="x")),
                                     "implementation: expected an object, got str"),
    "no units": (_broken(lambda d, i, u: i.pop("units")), "implementation: missing 'units'"),
    "no root": (_broken(lambda d, i, u: i.pop("root")), "implementation: missing 'root'"),
    "unknown root": (_broken(lambda d, i, u: i.update(root="Nope")),
                     "implementation.root: 'Nope' is not among the units (TinyBlock, TinyNorm"),
    "spec not JSON": (_broken(lambda d, i, u: u["TinyNorm"].update(spec='{"unitname": TinyNorm}')),
                      "implementation.units.TinyNorm.spec: not valid JSON: line 1 column 14"),
    "spec not an object": (_broken(lambda d, i, u: u["TinyNorm"].update(spec="[1]")),
                           "implementation.units.TinyNorm.spec: expected a JSON object, got list"),
    "spec inputs not names": (_broken(lambda d, i, u: u["TinyNorm"].update(spec='{"inputs": "X"}')),
                              "implementation.units.TinyNorm.spec.inputs: expected a list of strings"),
    "declaration not JSON": (_broken(lambda d, i, u: i["declares"].update(RotaryEmb="{")),
                             "implementation.declares.RotaryEmb: not valid JSON"),
    "code does not parse": (
        _broken(lambda d, i, u: u["TinyMLP"].update(code=MLP_CODE.replace("**Z):", "**Z)"))),
        f"implementation.units.TinyMLP.code: does not parse: line {_line_of(MLP_CODE, '**Z):')}: "),
    "code not a string": (_broken(lambda d, i, u: u["TinyMLP"].update(code=42)),
                          "implementation.units.TinyMLP.code: expected a string of Python code, got int"),
    "no code": (_broken(lambda d, i, u: u["TinyMLP"].pop("code")),
                "implementation.units.TinyMLP: missing 'code'"),
    "test does not parse": (
        _broken(lambda d, i, u: u["TinyNorm"]["gautests"].update(test_unit_rms="def t(:\n")),
        "implementation.units.TinyNorm.gautests.test_unit_rms: does not parse: line 1"),
    "children not a list": (_broken(lambda d, i, u: u["TinyBlock"].update(children="TinyNorm")),
                            "implementation.units.TinyBlock.children: expected a list, got str"),
    "class missing": (
        _broken(lambda d, i, u: u["TinyMLP"].update(code=MLP_CODE.replace("class TinyMLP", "class M"))),
        "design tiny_gpt: unit TinyMLP: code defines no class named TinyMLP"),
    "unfinished": (_broken(lambda d, i, u: (u.pop("RotaryEmb"), d.update(status="unfinished"))),
                   "design tiny_gpt has status 'unfinished', not 'implemented'; "
                   "declared children not implemented: RotaryEmb"),
    "failed": (_broken(lambda d, i, u: d.update(status="failed")), "has status 'failed', not 'implemented'"),
    "child not implemented": (_broken(lambda d, i, u: u.pop("RotaryEmb")),
                              "design tiny_gpt: child 'RotaryEmb' is declared but never implemented"),
    "child unknown": (_broken(lambda d, i, u: (u.pop("RotaryEmb"), i["declares"].pop("RotaryEmb"))),
                      "unit CausalAttention: child 'RotaryEmb' is neither implemented nor declared"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_gives_one_line_naming_what_and_where(case):
    data, expected = BAD_INPUTS[case]
    with pytest.raises(TreeError) as error:
        from_genesys(data, where="tiny_gpt.json")
    message = str(error.value)
    assert message.startswith("tiny_gpt.json: ") and "\n" not in message
    assert expected in message


def test_text_that_is_not_json():
    with pytest.raises(TreeError, match=r"^x.json: not valid JSON: line 1 column 2: "):
        from_genesys_json("{oops", where="x.json")


# ---------------------------------------------------------------- a Genesys habit: parents set kwarg_all keys for their children

SHARED_KWARGS_DESIGN = {
    "name": "shared_kwargs", "root": "Outer",
    "units": {
        "Outer": {"spec": '{"unitname":"Outer","document":"","inputs":["X"],"outputs":["Y"]}',
                  "children": ["Inner"],
                  "code": "from model_discovery.model.utils.modules import GAUBase, gau_test, UnitDecl\n\n"
                          "class Outer(GAUBase):\n"
                          "    def __init__(self, embed_dim, block_loc, kwarg_all, device=None, dtype=None,\n"
                          "                 **kwargs):\n"
                          "        self.factory_kwargs = {'device': device, 'dtype': dtype}\n"
                          "        super().__init__(embed_dim, block_loc, kwarg_all)\n"
                          "        kwarg_all['inner_dim'] = 2 * embed_dim\n"
                          "        self.inner = Inner(embed_dim=self.embed_dim, block_loc=self.block_loc,\n"
                          "            kwarg_all=self.kwarg_all, **self.factory_kwargs, **self.kwarg_all)\n\n"
                          "    def _forward(self, X, **Z):\n"
                          "        return self.inner(X, **Z)[0]\n"},
        "Inner": {"spec": '{"unitname":"Inner","document":"","inputs":["X"],"outputs":["Y"]}', "children": [],
                  "code": "from model_discovery.model.utils.modules import GAUBase, gau_test, UnitDecl\n\n"
                          "class Inner(GAUBase):\n"
                          "    def __init__(self, embed_dim, block_loc, kwarg_all, device=None, dtype=None,\n"
                          "                 inner_dim=None, **kwargs):\n"
                          "        self.factory_kwargs = {'device': device, 'dtype': dtype}\n"
                          "        super().__init__(embed_dim, block_loc, kwarg_all)\n"
                          "        self.inner_dim = inner_dim\n\n"
                          "    def _forward(self, X, **Z):\n"
                          "        return X\n"},
    },
    "declares": {"Inner": '{"unitname":"Inner","requirements":"","inputs":["X"],"outputs":["Y"]}'},
}


def test_parent_setting_kwarg_all_reaches_children():
    module = load_design_module(from_genesys(copy.deepcopy(SHARED_KWARGS_DESIGN)))
    model = module.build_model(d_model=16, n_block=2)
    assert model.blocks[0].inner.inner_dim == 32
    assert "inner_dim" not in module.KWARG_ALL  # each block edits its own copy
