"""The GAU contract under the module path the Genesys paper's unit code imports."""

from designs.gau import GAUBase, GAUContractError, UnitDecl, UnitSpec, gau_test

__all__ = ["GAUBase", "GAUContractError", "UnitDecl", "UnitSpec", "gau_test"]
