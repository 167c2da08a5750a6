"""Compatibility shim: unit code written for the Genesys paper imports
`model_discovery.model.utils.modules`; this package makes that import resolve to
Genesys's own GAU contract (designs.gau)."""
