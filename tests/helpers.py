"""Shared test helpers: build models from trees two ways."""

import torch

from designs.gau import GAUBase
from designs.lm import DesignLM, LMConfig
from designs.model import load_design_module


def in_memory_lm(tree, d_model=32, n_block=2, vocab_size=256):
    """The LM built from the package runtime with the units executed into one namespace."""
    namespace = {"GAUBase": GAUBase}
    for name in tree.reachable():
        exec(compile(tree.units[name].code, f"<unit {name}>", "exec"), namespace)
    return DesignLM(namespace[tree.root], LMConfig(vocab_size, d_model, n_block), tree.kwarg_all())


def composed_lm(tree, d_model=32, n_block=2, vocab_size=256):
    """The LM built from the tree's composed standalone module."""
    return load_design_module(tree).build_model(d_model=d_model, n_block=n_block, vocab_size=vocab_size)


def assert_causal(model, vocab_size=256, seq_len=24, cut=13):
    """Perturbing tokens after `cut` changes no logit before it; no gradient flows back in time."""
    torch.manual_seed(1)
    tokens = torch.randint(0, vocab_size, (2, seq_len))
    perturbed = tokens.clone()
    perturbed[:, cut:] = torch.randint(0, vocab_size, (2, seq_len - cut))
    with torch.no_grad():
        a, b = model(tokens), model(perturbed)
    torch.testing.assert_close(a[:, :cut], b[:, :cut], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(a[:, cut:], b[:, cut:])
    embeddings = model.embedding(tokens).detach().requires_grad_(True)
    X, Z = embeddings, {}
    for block in model.blocks:
        X, Z = block(X, **Z)
    X[:, :cut].sum().backward()
    assert embeddings.grad[:, cut:].abs().max() == 0
    assert embeddings.grad[:, :cut].abs().max() > 0
