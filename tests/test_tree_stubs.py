"""UnitTree.with_stubs: a partial tree (declared, unimplemented children) still builds and runs."""

import pytest
import torch

from designs.gau import UnitDecl
from designs.seeds import load_seed
from designs.tree import TreeError, UnitTree
from tests.helpers import composed_lm, in_memory_lm
from verifier.format_check import check_tree as format_check_tree

# GPT2Block rewritten to call a new mixer `ConvMixer` that is only declared, not implemented.
BLOCK_WITH_NEW_CHILD = '''
from designs.gau import GAUBase


class GPT2Block(GAUBase):
    """Pre-norm block whose token mixer is a declared child still to be written."""

    def __init__(self, embed_dim, block_loc, kwarg_all, device=None, dtype=None, **kwargs):
        self.factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__(embed_dim, block_loc, kwarg_all)
        kw = dict(embed_dim=self.embed_dim, block_loc=self.block_loc, kwarg_all=self.kwarg_all,
                  **self.factory_kwargs, **self.kwarg_all)
        self.norm1 = LayerNorm(**kw)
        self.mixer = ConvMixer(**kw)
        self.norm2 = LayerNorm(**kw)
        self.mlp = GeluMLP(**kw)

    def _forward(self, X, **Z):
        H, Z = self.norm1(X, **Z)
        H, Z = self.mixer(H, **Z)
        X = X + H
        H, Z = self.norm2(X, **Z)
        H, Z = self.mlp(H, **Z)
        return X + H, Z
'''


def partial_tree() -> UnitTree:
    decl = UnitDecl("ConvMixer", "causal short convolution over time", ["X"], ["Y"])
    return load_seed("gpt2").replace("GPT2Block", BLOCK_WITH_NEW_CHILD, declares={"ConvMixer": decl})


def test_partial_tree_is_not_complete_but_its_stubbed_tree_is():
    tree = partial_tree()
    assert tree.missing() == ["ConvMixer"]
    assert "MHA" not in tree.units  # no longer reached: pruned
    with pytest.raises(TreeError, match="declared but never implemented"):
        tree.validate(complete=True)
    stubbed = tree.with_stubs()
    assert stubbed.missing() == []
    assert stubbed.meta["stubs"] == ["ConvMixer"]
    assert stubbed.units["ConvMixer"].spec.document.endswith("causal short convolution over time")
    # the partial tree itself is untouched (trees are values)
    assert "ConvMixer" not in tree.units


def test_stubs_pass_the_format_check_and_compose():
    _, report = format_check_tree(partial_tree().with_stubs())
    assert report.ok, report.to_markdown()
    source = partial_tree().with_stubs().compose()
    assert "class ConvMixer(GAUBase)" in source


def test_stub_is_the_identity_and_keeps_z():
    stubbed = partial_tree().with_stubs()
    namespace = {}
    from designs.gau import GAUBase

    namespace["GAUBase"] = GAUBase
    exec(stubbed.units["ConvMixer"].code, namespace)
    unit = namespace["ConvMixer"](16, (0, 1), {})
    X = torch.randn(2, 5, 16)
    Y, Z = unit(X, keep="me")
    assert torch.equal(Y, X)
    assert Z == {"keep": "me"}


def test_stubbed_model_builds_the_same_both_ways_and_trains():
    stubbed = partial_tree().with_stubs()
    torch.manual_seed(0)
    a = in_memory_lm(stubbed)
    torch.manual_seed(0)
    b = composed_lm(stubbed)
    tokens = torch.randint(0, 256, (2, 12))
    torch.testing.assert_close(a(tokens), b(tokens))
    loss = b.loss(tokens)
    loss.backward()
    assert torch.isfinite(loss)


def test_complete_tree_comes_back_unchanged():
    tree = load_seed("gpt2")
    stubbed = tree.with_stubs()
    assert stubbed.to_dict() == tree.to_dict()
    assert stubbed.fingerprint() == tree.fingerprint()


def test_undeclared_missing_child_is_an_error_not_a_stub():
    tree = partial_tree()
    tree.declares.pop("ConvMixer")
    with pytest.raises(TreeError, match="ConvMixer"):
        tree.with_stubs()
