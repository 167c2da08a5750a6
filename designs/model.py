"""Turning a unit tree into a running language model, and measuring it.

`load_design_module` executes a tree's composed source, so it runs design code: call
it only in a child process (designs.measure, the verifier's sandbox) or on trusted
seeds in tests. Everything here works on the module it returns.
"""

from __future__ import annotations

import types
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from designs.loader import load_source  # noqa: F401 - re-exported
from designs.tree import UnitTree

def load_design_module(tree: UnitTree, source: str | None = None) -> types.ModuleType:
    """Execute the composed source of a tree as a fresh module (tracebacks show its lines)."""
    return load_source(source or tree.compose(), tree.name)


def build_lm(module: types.ModuleType, d_model: int, n_block: int, vocab_size: int = 256,
             device=None, dtype=None, **overrides) -> torch.nn.Module:
    return module.build_model(d_model=d_model, n_block=n_block, vocab_size=vocab_size,
                              device=device, dtype=dtype, **overrides)


def count_params(module: types.ModuleType, d_model: int, n_block: int, vocab_size: int = 256) -> tuple[int, int]:
    """(non-embedding, total) parameters, counted on the meta device (no memory, no init)."""
    model = build_lm(module, d_model, n_block, vocab_size, device="meta")
    return model.num_params(non_embedding=True), model.num_params(non_embedding=False)


@dataclass
class Flops:
    forward_per_token: float
    train_per_token: float  # forward + backward


def _cpu_attention_formulas() -> dict:
    """FlopCounterMode has formulas for the CUDA kernels of F.scaled_dot_product_attention
    but none for the CPU one, whose FLOPs it would leave out (all of attention's T^2 work):
    count the CPU kernel and its backward with the same formulas."""
    from torch.utils import flop_counter

    def forward(query, key, value, *args, out_shape=None, **kwargs) -> int:  # shapes, as FlopCounterMode passes
        return flop_counter.sdpa_flop_count(query, key, value)

    def backward(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
        return flop_counter.sdpa_backward_flop_count(grad_out, query, key, value)

    aten = torch.ops.aten
    formulas = {}
    for op, formula in (("_scaled_dot_product_flash_attention_for_cpu", forward),
                        ("_scaled_dot_product_flash_attention_for_cpu_backward", backward)):
        if hasattr(aten, op):
            formulas[getattr(aten, op)] = formula
    return formulas


def measure_flops(model: torch.nn.Module, seq_len: int = 256, vocab_size: int = 256) -> Flops:
    """FLOPs per token counted by torch's FlopCounterMode on one sequence (not estimated).

    Attention through F.scaled_dot_product_attention counts as full (non-causal) T x T
    score and value products on every device, as torch counts its CUDA kernels."""
    tokens = torch.randint(0, vocab_size, (1, seq_len + 1), device=next(model.parameters()).device)
    formulas = _cpu_attention_formulas()
    with FlopCounterMode(display=False, custom_mapping=formulas) as counter:
        loss = model.loss(tokens)
    forward = counter.get_total_flops()
    with FlopCounterMode(display=False, custom_mapping=formulas) as counter:
        loss.backward()
    backward = counter.get_total_flops()
    model.zero_grad(set_to_none=True)
    return Flops(forward / seq_len, (forward + backward) / seq_len)
