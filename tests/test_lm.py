"""DesignLM: causality of the seeds, Z threaded through blocks, counts, init, FLOPs."""

import math

import pytest
import torch

from designs.model import load_design_module, measure_flops
from designs.seeds import load_seed, seed_names
from designs.tree import Unit, UnitTree
from designs.gau import UnitSpec
from helpers import assert_causal, composed_lm

DEPTH_CODE = '''
from designs.gau import GAUBase


class Depth(GAUBase):
    """Counts the blocks it has passed through in Z['depth'] and remembers what it saw."""

    def __init__(self, embed_dim, block_loc, kwarg_all, device=None, dtype=None, **kwargs):
        super().__init__(embed_dim, block_loc, kwarg_all)

    def _forward(self, X, depth=0):
        self.seen = depth
        return X, {"depth": depth + 1}
'''


@pytest.mark.parametrize("name", seed_names())
def test_seed_is_causal(name):
    assert_causal(composed_lm(load_seed(name), d_model=32, n_block=2))


def test_z_is_threaded_through_the_blocks():
    tree = UnitTree("depth", "Depth", {"Depth": Unit("Depth", DEPTH_CODE, UnitSpec("Depth"))})
    model = composed_lm(tree, d_model=16, n_block=3)
    model(torch.randint(0, 256, (1, 4)))
    assert [block.seen for block in model.blocks] == [0, 1, 2]
    assert [block.block_loc for block in model.blocks] == [(0, 3), (1, 3), (2, 3)]


def test_parameter_counts_and_tied_head():
    model = composed_lm(load_seed("llama"), d_model=64, n_block=2)
    assert model.lm_head.weight is model.embedding.weight
    total = sum(p.numel() for p in model.parameters())
    assert model.num_params(non_embedding=False) == total
    assert model.num_params(non_embedding=True) == total - 256 * 64


def test_gpt2_init():
    """N(0, d_model^-0.5) (fan-in), residual projections scaled by 1/sqrt(2 n_block) as in GPT-2."""
    model = composed_lm(load_seed("gpt2"), d_model=256, n_block=8)
    block = model.blocks[3]
    assert block.attn.qkv_proj.weight.std().item() == pytest.approx(256 ** -0.5, rel=0.05)
    assert block.mlp.fc2.weight.std().item() == pytest.approx(256 ** -0.5 / math.sqrt(16), rel=0.05)
    assert block.mlp.fc1.bias.abs().max() == 0
    assert block.norm1.norm.weight.min() == 1


def test_loss_at_init_is_uniform_plus_the_logit_variance():
    """The tied head at fan-in init gives logits of variance d_model * (d_model^-0.5)^2 = 1, so the
    loss at init is about log(V) + 1/2 (E log-sum-exp of V normal logits); nothing is learned yet."""
    model = composed_lm(load_seed("gpt2"), d_model=64, n_block=2)
    loss = model.loss(torch.randint(0, 256, (4, 65)))
    assert abs(loss.item() - (math.log(256) + 0.5)) < 0.1


def test_flops_are_measured():
    model = composed_lm(load_seed("gpt2"), d_model=64, n_block=2)
    flops = measure_flops(model, seq_len=64)
    matmul_params = model.num_params(non_embedding=True) + 256 * 64  # blocks and the LM head
    assert flops.forward_per_token >= 2 * matmul_params * 0.9
    assert flops.forward_per_token < 2 * matmul_params * 1.5  # plus attention scores at this length
    assert flops.train_per_token == pytest.approx(3 * flops.forward_per_token, rel=0.1)


def test_attention_flops_are_counted_on_cpu_too():
    """torch counts F.scaled_dot_product_attention's CUDA kernels but not its CPU one: the T x T
    work must show here as on a GPU (forward 4 T d per block, backward 10 T d: 14 T d a token)."""
    d, blocks = 64, 2
    model = composed_lm(load_seed("gpt2"), d_model=d, n_block=blocks)
    short, long = measure_flops(model, seq_len=64), measure_flops(model, seq_len=256)
    assert long.forward_per_token - short.forward_per_token == 4 * d * blocks * (256 - 64)
    assert long.train_per_token - short.train_per_token == 14 * d * blocks * (256 - 64)


def test_meta_device_builds_without_memory():
    module = load_design_module(load_seed("gpt2"))
    model = module.build_model(d_model=2048, n_block=24, device="meta")
    assert model.num_params() > 1e9 and next(model.parameters()).is_meta


def test_reserved_hyperparameter_names_are_refused():
    module = load_design_module(load_seed("gpt2"))
    with pytest.raises(ValueError, match="may not be named embed_dim"):
        module.build_model(d_model=32, n_block=1, embed_dim=3)
