"""What a design is: the GAU contract, unit trees, the LM that wraps a block, sizing,
the seed library and the design archive."""

from designs.gau import GAUBase, GAUContractError, UnitDecl, UnitSpec, gau_test
from designs.tree import TreeError, Unit, UnitTree

__all__ = ["GAUBase", "GAUContractError", "UnitDecl", "UnitSpec", "gau_test", "TreeError", "Unit", "UnitTree"]
