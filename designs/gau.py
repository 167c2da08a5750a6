"""The GAU contract: the unit every design is built from.

A design is a tree of GAUs (generalized autoregressive units). The contract is the
one published with the Genesys paper (Cheng, Clark, Richardson, 2025), so unit code
written for it loads unchanged:

    class MyUnit(GAUBase):
        def __init__(self, embed_dim, block_loc, kwarg_all, device=None, dtype=None, **kwargs):
            self.factory_kwargs = {"device": device, "dtype": dtype}
            super().__init__(embed_dim, block_loc, kwarg_all)
            self.child = Child(embed_dim=self.embed_dim, block_loc=self.block_loc,
                               kwarg_all=self.kwarg_all, **self.factory_kwargs, **self.kwarg_all)

        def _forward(self, X, **Z):          # X: (batch, seq, embed_dim)
            Y, Z = self.child(X, **Z)
            return Y, {"some_key": ...}       # or just Y

`forward` (never overridden) validates shapes, hands `_forward` only the Z keys its
signature names (as in the paper, a `**Z` catch-all receives none: a unit names the
variables it reads), merges the updates it returns into Z and returns (Y, Z).

This module imports only the standard library and torch: `UnitTree.compose()`
inlines it into standalone design modules.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import asdict, dataclass, field

import torch
from torch import nn


class GAUContractError(ValueError):
    """A unit broke the GAU contract (wrong input or output shape, bad Z update)."""


@dataclass
class UnitSpec:
    """What an implemented unit is: its name, its documentation, its Z inputs/outputs."""

    unitname: str
    document: str = ""
    inputs: list[str] = field(default_factory=lambda: ["X"])
    outputs: list[str] = field(default_factory=lambda: ["Y"])

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class UnitDecl:
    """A child a unit needs: its name, what it must do, its Z inputs/outputs."""

    unitname: str
    requirements: str = ""
    inputs: list[str] = field(default_factory=lambda: ["X"])
    outputs: list[str] = field(default_factory=lambda: ["Y"])

    def to_dict(self) -> dict:
        return asdict(self)


def gau_test(func=None, *, device=None, dtype=None):
    """Mark a function in unit code as a unit test.

    Both `@gau_test` and `@gau_test(device=..., dtype=...)` work. The test function
    takes `(device=None, dtype=None)`; the checker calls it with the device and
    dtype under test, falling back to the ones given to the decorator.
    """

    def mark(test):
        @functools.wraps(test)
        def run(device=device, dtype=dtype, **kwargs):
            return test(device=device, dtype=dtype, **kwargs)

        run.is_gau_test = True
        return run

    return mark(func) if func is not None else mark


def find_gau_tests(namespace: dict) -> dict:
    """The unit tests (functions marked with `gau_test`) in a module namespace."""
    return {name: obj for name, obj in namespace.items() if getattr(obj, "is_gau_test", False)}


@functools.lru_cache(maxsize=None)
def _z_keys(forward_fn) -> frozenset:
    """The parameter names of a `_forward` function, cached per class."""
    return frozenset(inspect.signature(forward_fn).parameters)


class GAUBase(nn.Module):
    """Base of every generalized autoregressive unit.

    embed_dim: width of X. block_loc: (layer_idx, n_block), where this unit's block
    sits in the network. kwarg_all: every hyperparameter of the design; a unit
    passes it on to its children, each of which picks the arguments it names.
    """

    def __init__(self, embed_dim: int, block_loc: tuple, kwarg_all: dict):
        super().__init__()
        self.embed_dim = embed_dim
        self.block_loc = tuple(block_loc)
        # The same dict object as the parent's, as in the paper: a parent may set a key
        # (say, a head count) just before building the child that reads it.
        self.kwarg_all = kwarg_all

    def _forward(self, X, **Z):
        raise NotImplementedError(f"{type(self).__name__} must implement _forward(self, X, **Z)")

    def forward(self, X, **Z):
        """Run the unit: returns (Y, Z) with Y shaped like X and Z updated. Do not override."""
        name = type(self).__name__
        if X.dim() != 3 or X.shape[-1] != self.embed_dim:
            raise GAUContractError(
                f"{name}: input X must be (batch, seq, {self.embed_dim}), got {tuple(X.shape)}"
            )
        dtype = getattr(self, "factory_kwargs", {}).get("dtype")
        if dtype is not None and X.dtype != dtype:  # as in the paper: X arrives in the unit's dtype
            X = X.to(dtype)
        named = _z_keys(type(self)._forward)
        out = self._forward(X, **{k: v for k, v in Z.items() if k in named})
        if isinstance(out, tuple):
            if len(out) != 2 or not isinstance(out[1], dict):
                raise GAUContractError(f"{name}._forward must return Y or (Y, dict_of_Z_updates)")
            Y, updates = out
            Z.update(updates)
        else:
            Y = out
        if not isinstance(Y, torch.Tensor) or Y.shape != X.shape:
            got = tuple(Y.shape) if isinstance(Y, torch.Tensor) else type(Y).__name__
            raise GAUContractError(f"{name}: output Y must have X's shape {tuple(X.shape)}, got {got}")
        return Y, Z
