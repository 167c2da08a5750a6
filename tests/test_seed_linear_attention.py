"""Linear-attention seeds (retnet, gla, hybrid): chunked forms equal the recurrent references."""

import math

import pytest
import torch
from torch.nn import functional as F

from designs.model import load_design_module
from designs.seeds import load_seed, unit_namespace

GLA = unit_namespace("GatedLinearAttention")
RET = unit_namespace("MultiScaleRetention")


def gla_inputs(B, H, T, K, V, dtype=torch.float64, gate_scale=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(B, H, T, K, generator=g, dtype=dtype) for _ in range(2))
    v = torch.randn(B, H, T, V, generator=g, dtype=dtype)
    log_g = F.logsigmoid(torch.randn(B, H, T, K, generator=g, dtype=dtype) * 3) * gate_scale
    return q, k, v, log_g


def ret_inputs(B, H, T, K, V, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(B, H, T, K, generator=g, dtype=dtype) * K ** -0.5 for _ in range(2))
    v = torch.randn(B, H, T, V, generator=g, dtype=dtype)
    log_gamma = torch.log1p(-(2.0 ** (-5.0 - torch.arange(H, dtype=dtype))))
    return q, k, v, log_gamma


def outputs_and_grads(op, inputs, **kwargs):
    """Output, final state, and the gradients of a fixed random functional of both w.r.t. every input."""
    inputs = [x.detach().clone().requires_grad_(True) for x in inputs]
    state = kwargs.pop("state", None)
    if state is not None:
        state = state.detach().clone().requires_grad_(True)
    o, S = op(*inputs, state=state, **kwargs)
    g = torch.Generator().manual_seed(1)
    wo = torch.randn(o.shape, generator=g, dtype=o.dtype)
    wS = torch.randn(S.shape, generator=g, dtype=S.dtype)
    ((o * wo).sum() + (S * wS).sum()).backward()
    grads = [x.grad for x in inputs] + ([state.grad] if state is not None else [])
    return o.detach(), S.detach(), grads


SHAPES = [  # B, H, T, K, V
    (1, 1, 1, 4, 4),
    (2, 2, 7, 4, 6),
    (1, 3, 16, 8, 4),
    (2, 2, 37, 6, 8),
    (1, 2, 64, 4, 4),
    (2, 1, 100, 8, 16),
]


@pytest.mark.parametrize("B, H, T, K, V", SHAPES)
@pytest.mark.parametrize("chunk, sub", [(64, 16), (16, 16), (16, 4), (32, 8)])
def test_gla_chunked_matches_recurrent_outputs_and_grads(B, H, T, K, V, chunk, sub):
    inputs = gla_inputs(B, H, T, K, V)
    state = torch.randn(B, H, K, V, dtype=torch.float64)
    o, S, grads = outputs_and_grads(GLA["gla_chunked"], inputs, chunk_size=chunk, subchunk_size=sub, state=state)
    o_ref, S_ref, grads_ref = outputs_and_grads(GLA["gla_recurrent"], inputs, state=state)
    torch.testing.assert_close(o, o_ref, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(S, S_ref, atol=1e-10, rtol=1e-10)
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("B, H, T, K, V", SHAPES)
@pytest.mark.parametrize("chunk", [64, 16, 5])
def test_retention_chunked_matches_recurrent_outputs_and_grads(B, H, T, K, V, chunk):
    inputs = ret_inputs(B, H, T, K, V)
    state = torch.randn(B, H, K, V, dtype=torch.float64)
    o, S, grads = outputs_and_grads(RET["retention_chunked"], inputs, chunk_size=chunk, state=state)
    o_ref, S_ref, grads_ref = outputs_and_grads(RET["retention_recurrent"], inputs, state=state)
    torch.testing.assert_close(o, o_ref, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(S, S_ref, atol=1e-10, rtol=1e-10)
    for g, g_ref in zip(grads, grads_ref):  # log_gamma's gradient too: a mutation may learn the decays
        torch.testing.assert_close(g, g_ref, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("op, ref, make", [
    ("gla_chunked", "gla_recurrent", gla_inputs), ("retention_chunked", "retention_recurrent", ret_inputs)])
def test_fp32_chunked_matches_recurrent(op, ref, make):
    ns = GLA if op.startswith("gla") else RET
    inputs = make(2, 2, 77, 8, 8, dtype=torch.float32)
    if op.startswith("gla"):  # the model's gates, logsigmoid / 16 (the fp64 tests use far smaller ones)
        inputs = (*inputs[:3], inputs[3] / 16)
    o, S, grads = outputs_and_grads(ns[op], inputs)
    o_ref, S_ref, grads_ref = outputs_and_grads(ns[ref], inputs)
    torch.testing.assert_close(o, o_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(S, S_ref, atol=1e-5, rtol=1e-5)
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("op, ref, make", [
    ("gla_chunked", "gla_recurrent", gla_inputs), ("retention_chunked", "retention_recurrent", ret_inputs)])
def test_token_by_token_decoding_equals_chunked(op, ref, make):
    ns = GLA if op.startswith("gla") else RET
    q, k, v, decay = make(2, 3, 45, 4, 6)
    o_full, S_full = ns[op](q, k, v, decay)
    state, outs = None, []
    for t in range(q.shape[2]):
        step = decay[:, :, t:t + 1] if decay.dim() == 4 else decay
        o_t, state = ns[ref](q[:, :, t:t + 1], k[:, :, t:t + 1], v[:, :, t:t + 1], step, state=state)
        outs.append(o_t)
    torch.testing.assert_close(torch.cat(outs, dim=2), o_full, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(state, S_full, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("op, make", [("gla_chunked", gla_inputs), ("retention_chunked", ret_inputs)])
@pytest.mark.parametrize("cut", [1, 30, 64, 99])
def test_state_hand_off(op, make, cut):
    ns = GLA if op.startswith("gla") else RET
    q, k, v, decay = make(2, 2, 130, 4, 6)
    o_full, S_full = ns[op](q, k, v, decay)

    def part(x, sl):
        return x[:, :, sl] if x.dim() == 4 else x

    head, tail = slice(0, cut), slice(cut, None)
    _, S_head = ns[op](*(part(x, head) for x in (q, k, v, decay)))
    o_tail, S_tail = ns[op](*(part(x, tail) for x in (q, k, v, decay)), state=S_head)
    torch.testing.assert_close(o_tail, o_full[:, :, cut:], atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(S_tail, S_full, atol=1e-10, rtol=1e-10)


def test_gla_chunked_is_safe_with_vanishing_gates():
    """Cumulative log gates far below fp32's exp range (-87) leave the chunked form finite and exact."""
    q, k, v, log_g = gla_inputs(1, 2, 150, 4, 4, gate_scale=20.0)
    assert log_g.sum(2).min() < -1000
    o, S = GLA["gla_chunked"](q, k, v, log_g)
    o_ref, S_ref = GLA["gla_recurrent"](q, k, v, log_g)
    torch.testing.assert_close(o, o_ref, atol=1e-9, rtol=1e-9)
    o32, _ = GLA["gla_chunked"](*(x.float() for x in (q, k, v, log_g)))
    assert torch.isfinite(o32).all()


def test_ops_work_in_bf16_and_return_the_input_dtype():
    for ns, op, make in ((GLA, "gla_chunked", gla_inputs), (RET, "retention_chunked", ret_inputs)):
        q, k, v, decay = make(1, 2, 40, 8, 8, dtype=torch.float32)
        o32, _ = ns[op](q, k, v, decay)
        o16, S = ns[op](q.bfloat16(), k.bfloat16(), v.bfloat16(), decay)
        assert o16.dtype == torch.bfloat16 and S.dtype == torch.float32 and S.shape == (1, 2, 8, 8)
        torch.testing.assert_close(o16.float(), o32, atol=0.1, rtol=0.05)


def test_retention_decays_follow_the_paper():
    module = load_design_module(load_seed("retnet"))
    model = module.build_model(d_model=96, n_block=2, retnet_heads=6)
    gammas = model.blocks[1].retention.log_gamma.exp()
    expected = 1 - 2.0 ** (-5.0 - torch.arange(6.0))
    torch.testing.assert_close(gammas, expected)
    assert ((gammas > 0) & (gammas < 1)).all()
    names = [n for n, _ in model.named_parameters()]
    assert not any("log_gamma" in n for n in names)  # fixed decays: a buffer, not parameters


def test_gla_gates_start_near_the_paper_value_and_stay_in_range():
    module = load_design_module(load_seed("gla"))
    model = module.build_model(d_model=64, n_block=1)
    unit = model.blocks[0].attn
    assert unit.gate_up.bias.abs().max() == 0 and unit.gate_down.out_features == 16
    X = torch.randn(2, 9, 64) * 10
    log_g = F.logsigmoid(unit.gate_up(unit.gate_down(X))) / 16
    assert (log_g <= 0).all()
    near_zero = F.logsigmoid(unit.gate_up(unit.gate_down(torch.zeros(1, 1, 64)))) / 16
    torch.testing.assert_close(near_zero.exp(), torch.full_like(near_zero, 0.5 ** (1 / 16)))
    assert unit.key_dim == 32 and unit.value_dim == 64 and unit.n_heads == 4


@pytest.mark.parametrize("name", ["retnet", "gla", "hybrid"])
def test_seed_builds_at_several_widths_and_runs_in_bf16(name):
    module = load_design_module(load_seed(name))
    tokens = torch.randint(0, 256, (2, 70))
    for d in (32, 48, 144):
        model = module.build_model(d_model=d, n_block=2, dtype=torch.bfloat16)
        with torch.no_grad():
            logits = model(tokens if d == 32 else tokens[:, :20])
        assert logits.dtype == torch.bfloat16 and torch.isfinite(logits.float()).all()


def test_seed_trains_one_step_in_fp32():
    for name in ("retnet", "gla", "hybrid"):
        model = load_design_module(load_seed(name)).build_model(d_model=32, n_block=2)
        loss = model.loss(torch.randint(0, 256, (2, 41)))
        assert 0 < loss.item() - math.log(256) < 1.0  # fan-in init: ~log(V) + var(logits)/2, var ~ 1
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_hybrid_interleaves_by_depth():
    module = load_design_module(load_seed("hybrid"))
    model = module.build_model(d_model=32, n_block=5)
    kinds = [type(block.mixer).__name__ for block in model.blocks]
    assert kinds == ["GatedLinearAttention", "MHA", "GatedLinearAttention", "MHA", "GatedLinearAttention"]
    every_third = module.build_model(d_model=32, n_block=6, hybrid_attn_every=3)
    assert [block.uses_attention for block in every_third.blocks] == [False, False, True, False, False, True]
    one = module.build_model(d_model=32, n_block=1)
    assert type(one.blocks[0].mixer).__name__ == "GatedLinearAttention"
    assert one(torch.randint(0, 256, (1, 5))).shape == (1, 5, 256)
    # GLA's head count is its own argument: MHA and GLA heads can differ in one design
    mixed = module.build_model(d_model=64, n_block=2, n_heads=8, gla_heads=2)
    assert mixed.blocks[0].mixer.n_heads == 2 and mixed.blocks[1].mixer.n_heads == 8
