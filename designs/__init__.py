"""What a design is: the GAU contract, unit trees, the LM that wraps a block, sizing,
the seed library and the design archive.

The names below load on first use, so that importing a torch-free submodule (say,
`designs.loader` in a sandboxed child) does not import torch.
"""

import importlib

_EXPORTS = {
    "GAUBase": "designs.gau", "GAUContractError": "designs.gau", "UnitDecl": "designs.gau",
    "UnitSpec": "designs.gau", "gau_test": "designs.gau",
    "TreeError": "designs.tree", "Unit": "designs.tree", "UnitTree": "designs.tree",
}
__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'designs' has no attribute {name!r}")
