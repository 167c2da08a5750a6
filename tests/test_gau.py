"""The GAU contract: shapes are checked, Z passes by name, updates merge."""

import pytest
import torch

from designs.gau import GAUBase, GAUContractError, UnitDecl, UnitSpec, find_gau_tests, gau_test


class Writer(GAUBase):
    def __init__(self, embed_dim, block_loc, kwarg_all, device=None, dtype=None, **kwargs):
        self.factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__(embed_dim, block_loc, kwarg_all)

    def _forward(self, X, scale=1.0):
        return X * scale, {"written": self.block_loc[0]}


class CatchAll(GAUBase):
    def _forward(self, X, **Z):
        self.received = dict(Z)
        return X


class Reshaper(GAUBase):
    def _forward(self, X, **Z):
        return X[:, :-1]


def test_named_z_keys_are_passed_and_updates_merged():
    unit = Writer(8, (3, 4), {})
    X = torch.randn(2, 5, 8)
    Y, Z = unit(X, scale=2.0, other="kept")
    assert torch.equal(Y, X * 2)
    assert Z == {"scale": 2.0, "other": "kept", "written": 3}


def test_catch_all_receives_no_z_as_in_the_paper():
    unit = CatchAll(8, (0, 1), {})
    Y, Z = unit(torch.randn(1, 3, 8), secret=1)
    assert unit.received == {} and Z == {"secret": 1}


def test_input_and_output_shapes_are_checked():
    with pytest.raises(GAUContractError, match=r"input X must be \(batch, seq, 8\)"):
        Writer(8, (0, 1), {})(torch.randn(5, 8))
    with pytest.raises(GAUContractError, match=r"Reshaper: output Y must have X's shape"):
        Reshaper(8, (0, 1), {})(torch.randn(2, 5, 8))


def test_bad_update_is_reported():
    class BadUpdate(GAUBase):
        def _forward(self, X):
            return X, ["not", "a", "dict"]

    with pytest.raises(GAUContractError, match="dict_of_Z_updates"):
        BadUpdate(4, (0, 1), {})(torch.randn(1, 2, 4))


def test_kwarg_all_is_shared_with_children_as_in_the_paper():
    shared = {"n_heads": 4}
    unit = Writer(8, (0, 1), shared)
    unit.kwarg_all["head_dim"] = 2  # a parent setting a key for the child it builds next
    assert shared == {"n_heads": 4, "head_dim": 2} and unit.block_loc == (0, 1)


def test_input_is_cast_to_the_units_dtype():
    unit = Writer(4, (0, 1), {}, dtype=torch.float64)
    Y, _ = unit(torch.randn(1, 2, 4, dtype=torch.float32))
    assert Y.dtype == torch.float64


def test_gau_test_marks_functions_with_or_without_arguments():
    @gau_test
    def test_plain(device=None, dtype=None):
        return device, dtype

    @gau_test(dtype=torch.float64)
    def test_typed(device=None, dtype=None):
        return device, dtype

    assert test_plain() == (None, None)
    assert test_typed() == (None, torch.float64)
    assert test_typed(dtype=torch.float32) == (None, torch.float32)
    assert set(find_gau_tests({"a": test_plain, "b": test_typed, "c": len})) == {"a", "b"}


def test_spec_and_decl_carry_their_fields():
    spec = UnitSpec("MHA", "attention", ["X"], ["Y"])
    decl = UnitDecl(unitname="RotaryEmb", requirements="rotate q and k", inputs=["input_emb"], outputs=["output_emb"])
    assert spec.to_dict() == {"unitname": "MHA", "document": "attention", "inputs": ["X"], "outputs": ["Y"]}
    assert decl.to_dict()["inputs"] == ["input_emb"]


def test_the_papers_module_path_resolves_to_this_contract():
    from model_discovery.model.utils import modules

    assert modules.GAUBase is GAUBase and modules.UnitDecl is UnitDecl and modules.gau_test is gau_test
