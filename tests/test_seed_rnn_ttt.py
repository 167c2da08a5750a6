"""RWKV-6 and TTT-Linear seeds: the chunked (dual) forms equal the recurrent (primal) forms.

Outputs, final states and gradients agree over batch sizes, lengths (shorter than a chunk,
not a multiple of it), head counts and head sizes; decoding one token at a time and handing
the state from one call to the next give the whole-sequence result; the seeds build at
several widths and run in bf16.
"""

import pytest
import torch

from designs.gau import find_gau_tests
from designs.model import load_design_module
from designs.seeds import load_seed, unit_namespace

RWKV6 = unit_namespace("RWKV6TimeMix")
TTT = unit_namespace("TTTLinear")


def _grads(loss, tensors):
    return torch.autograd.grad(loss, tensors, allow_unused=True)


def _weighted(outputs, seed=1):
    """A scalar with dense, random upstream gradients for every output tensor."""
    g = torch.Generator().manual_seed(seed)
    return sum((x * torch.randn(x.shape, generator=g, dtype=x.dtype)).sum() for x in outputs)


# ---------------------------------------------------------------- RWKV-6


def rwkv6_inputs(B, H, T, K, V, dtype=torch.float64, decay_scale=1.5, seed=0):
    """r, k, v, log_w, u, state; log_w = -exp(d) with d spread widely (decays from ~1 to ~0)."""
    g = torch.Generator().manual_seed(seed)
    randn = lambda *shape: torch.randn(*shape, generator=g, dtype=dtype)  # noqa: E731
    log_w = -torch.exp(randn(B, H, T, K) * decay_scale - 1.0)
    return [randn(B, H, T, K), randn(B, H, T, K), randn(B, H, T, V), log_w, randn(H, K), randn(B, H, K, V)]


RWKV6_SHAPES = [  # B, H, T, K, V, chunk
    (1, 1, 1, 4, 4, 8),
    (2, 2, 5, 8, 6, 8),  # shorter than one chunk
    (2, 3, 37, 8, 8, 8),  # not a multiple of the chunk
    (1, 2, 64, 16, 8, 16),
    (3, 1, 33, 4, 12, 4),
]


@pytest.mark.parametrize("B, H, T, K, V, chunk", RWKV6_SHAPES)
def test_rwkv6_chunked_equals_recurrent_with_gradients(B, H, T, K, V, chunk):
    inputs = [x.requires_grad_() for x in rwkv6_inputs(B, H, T, K, V)]
    r, k, v, log_w, u, state = inputs
    o_chunk, s_chunk = RWKV6["rwkv6_chunked"](r, k, v, log_w, u, chunk, state=state)
    o_rec, s_rec = RWKV6["rwkv6_recurrent"](r, k, v, log_w, u, state=state)
    torch.testing.assert_close(o_chunk, o_rec, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(s_chunk, s_rec, rtol=1e-10, atol=1e-10)
    for a, b in zip(_grads(_weighted([o_chunk, s_chunk]), inputs), _grads(_weighted([o_rec, s_rec]), inputs)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("B, H, T, K, V, chunk", [(2, 2, 37, 8, 8, 8), (1, 4, 70, 16, 16, 16)])
def test_rwkv6_chunked_fp32_matches_fp64_reference(B, H, T, K, V, chunk):
    """fp32 chunked (the training path) against the fp64 recurrence, decays up to exp(-50) per step."""
    inputs = rwkv6_inputs(B, H, T, K, V, decay_scale=2.0)
    reference, ref_state = RWKV6["rwkv6_recurrent"](*inputs[:5], state=inputs[5])
    r, k, v, log_w, u, state = (x.float().requires_grad_() for x in inputs)
    o, s = RWKV6["rwkv6_chunked"](r, k, v, log_w, u, chunk, state=state)
    assert o.dtype == torch.float32 and torch.isfinite(o).all()
    torch.testing.assert_close(o.double(), reference, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(s.double(), ref_state, rtol=1e-4, atol=1e-4)
    grads = _grads(_weighted([o]), [r, k, v, log_w, u, state])
    assert all(torch.isfinite(g).all() for g in grads)


def test_rwkv6_extreme_decay_is_exact_in_fp32():
    """w = exp(-1000): the state holds only the previous token, and nothing overflows."""
    r, k, v, _, u, _ = (x.float() for x in rwkv6_inputs(2, 2, 19, 8, 8))
    log_w = torch.full_like(r, -1000.0)
    o, state = RWKV6["rwkv6_chunked"](r, k, v, log_w, u, 8)
    prev_kv = torch.einsum("bhtk,bhtv->bhtkv", k, v)[:, :, :-1]
    expected = (r * u[None, :, None] * k).sum(-1, keepdim=True) * v
    expected[:, :, 1:] += torch.einsum("bhtk,bhtkv->bhtv", r[:, :, 1:], prev_kv)
    torch.testing.assert_close(o, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(state, torch.einsum("bhk,bhv->bhkv", k[:, :, -1], v[:, :, -1]))


def test_rwkv6_token_by_token_decoding_equals_chunked():
    r, k, v, log_w, u, _ = rwkv6_inputs(2, 2, 29, 8, 8)
    full, full_state = RWKV6["rwkv6_chunked"](r, k, v, log_w, u, 8)
    state, steps = None, []
    for t in range(29):
        o_t, state = RWKV6["rwkv6_recurrent"](r[:, :, t:t + 1], k[:, :, t:t + 1], v[:, :, t:t + 1],
                                               log_w[:, :, t:t + 1], u, state=state)
        steps.append(o_t)
    torch.testing.assert_close(torch.cat(steps, dim=2), full, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(state, full_state, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("cut", [3, 8, 21])
def test_rwkv6_state_hand_off(cut):
    r, k, v, log_w, u, state = rwkv6_inputs(2, 2, 30, 8, 4)
    full, full_state = RWKV6["rwkv6_chunked"](r, k, v, log_w, u, 8, state=state)
    head, mid = RWKV6["rwkv6_chunked"](*(x[:, :, :cut] for x in (r, k, v, log_w)), u, 8, state=state)
    tail, end = RWKV6["rwkv6_chunked"](*(x[:, :, cut:] for x in (r, k, v, log_w)), u, 8, state=mid)
    torch.testing.assert_close(torch.cat([head, tail], dim=2), full, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(end, full_state, rtol=1e-10, atol=1e-10)


def test_rwkv6_unit_decay_is_in_zero_one_and_state_shape():
    unit = RWKV6["RWKV6TimeMix"](48, (2, 4), {}, rwkv6_n_heads=3)
    with torch.no_grad():
        unit.decay_lora_a.normal_(std=0.5)  # a data-dependent decay far from init
        r, k, v, g, log_w = unit.projections(torch.randn(2, 10, 48) * 3)
    w = log_w.exp()
    assert (w > 0).all() and (w < 1).all() and log_w.shape == (2, 10, 48)
    heads = lambda x: x.view(2, 10, 3, 16).transpose(1, 2)  # noqa: E731
    _, state = RWKV6["rwkv6_chunked"](heads(r), heads(k), heads(v), heads(log_w), unit.bonus, 8)
    assert state.shape == (2, 3, 16, 16)


# ---------------------------------------------------------------- TTT-Linear


def ttt_inputs(B, H, T, K, mini_batch, dtype=torch.float64, seed=0):
    """q, k, v, eta, W0, b0, ln_weight, ln_bias, token_scale (1/(i+1) plus a perturbation)."""
    g = torch.Generator().manual_seed(seed)
    randn = lambda *shape: torch.randn(*shape, generator=g, dtype=dtype)  # noqa: E731
    eta = torch.rand(B, H, T, generator=g, dtype=dtype) * 0.5
    scale = 1.0 / torch.arange(1, mini_batch + 1, dtype=dtype) + 0.05 * randn(mini_batch)
    return [randn(B, H, T, K), randn(B, H, T, K), randn(B, H, T, K), eta, 0.3 * randn(H, K, K),
            0.1 * randn(H, K), 1 + 0.1 * randn(H, K), 0.1 * randn(H, K), scale]


TTT_SHAPES = [  # B, H, T, K, mini_batch
    (1, 1, 1, 4, 16),
    (2, 2, 9, 8, 16),  # shorter than one mini-batch
    (2, 3, 37, 8, 16),  # not a multiple of the mini-batch
    (1, 2, 32, 16, 16),  # whole mini-batches only
    (3, 1, 23, 6, 4),
    (1, 2, 7, 4, 1),  # mini-batch 1: plain online gradient descent
]


@pytest.mark.parametrize("B, H, T, K, mini_batch", TTT_SHAPES)
@pytest.mark.parametrize("scaled", [False, True])
def test_ttt_dual_form_equals_primal_form_with_gradients(B, H, T, K, mini_batch, scaled):
    inputs = [x.requires_grad_() for x in ttt_inputs(B, H, T, K, mini_batch)]
    args, scale = inputs[:8], inputs[8] if scaled else None
    o_dual, s_dual = TTT["ttt_linear_chunked"](*args, mini_batch, scale)
    o_primal, s_primal = TTT["ttt_linear_recurrent"](*args, mini_batch, scale)
    torch.testing.assert_close(o_dual, o_primal, rtol=1e-10, atol=1e-10)
    assert s_dual[4] == s_primal[4] == T % mini_batch
    for a, b in zip(s_dual[:4], s_primal[:4]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    wrt = inputs if scaled else inputs[:8]
    dual = _grads(_weighted([o_dual, *s_dual[:4]]), wrt)
    primal = _grads(_weighted([o_primal, *s_primal[:4]]), wrt)
    for a, b in zip(dual, primal):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_ttt_token_by_token_decoding_equals_dual_form():
    """The primal form carrying (W', b', G^W, G^b, n) one token at a time gives the dual form's result."""
    *args, scale = ttt_inputs(2, 2, 37, 8, 16)
    full, full_state = TTT["ttt_linear_chunked"](*args, 16, scale)
    q, k, v, eta, *weights = args
    state, steps = None, []
    for t in range(37):
        step = [x[:, :, t:t + 1] for x in (q, k, v, eta)]
        o_t, state = TTT["ttt_linear_recurrent"](*step, *weights, 16, scale, state=state)
        steps.append(o_t)
        assert state[4] == (t + 1) % 16
    torch.testing.assert_close(torch.cat(steps, dim=2), full, rtol=1e-10, atol=1e-10)
    for a, b in zip(state[:4], full_state[:4]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("cuts", [(5,), (16,), (3, 20), (7, 9, 30)])
def test_ttt_state_hand_off_mid_mini_batch(cuts):
    *args, scale = ttt_inputs(2, 2, 41, 8, 16)
    full, full_state = TTT["ttt_linear_chunked"](*args, 16, scale)
    q, k, v, eta, *weights = args
    state, pieces = None, []
    for start, stop in zip((0, *cuts), (*cuts, 41)):
        piece = [x[:, :, start:stop] for x in (q, k, v, eta)]
        o, state = TTT["ttt_linear_chunked"](*piece, *weights, 16, scale, state=state)
        pieces.append(o)
    torch.testing.assert_close(torch.cat(pieces, dim=2), full, rtol=1e-10, atol=1e-10)
    for a, b in zip(state[:4], full_state[:4]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_ttt_inner_gradient_is_the_gradient_of_the_reconstruction_loss():
    g = torch.Generator().manual_seed(3)
    z, target = torch.randn(5, 3, 8, generator=g, dtype=torch.float64), torch.randn(5, 3, 8, generator=g,
                                                                                    dtype=torch.float64)
    weight, bias = 1 + 0.1 * torch.randn(3, 8, dtype=torch.float64), 0.1 * torch.randn(3, 8, dtype=torch.float64)
    z.requires_grad_()
    ln = torch.nn.functional.layer_norm(z, (8,), eps=1e-6) * weight + bias
    (autograd,) = torch.autograd.grad(0.5 * (ln - target).square().sum(), z)
    torch.testing.assert_close(TTT["ttt_linear_inner_grad"](z, target, weight, bias), autograd)


def test_ttt_final_state_is_mini_batch_gradient_descent():
    """After whole mini-batches the state is (W, b) of explicit mini-batch GD, with nothing accumulated."""
    *args, scale = ttt_inputs(1, 2, 32, 4, 8)
    q, k, v, eta, W0, b0, gamma, beta = args
    _, (W_end, b_end, W_grad, b_grad, n) = TTT["ttt_linear_chunked"](*args, 8, scale)
    assert n == 0 and W_grad.abs().max() == 0 and b_grad.abs().max() == 0
    W, b = W0.expand(1, 2, 4, 4), b0.expand(1, 2, 4)
    for start in range(0, 32, 8):
        W, b = W.detach().requires_grad_(), b.detach().requires_grad_()
        ks, vs, es = k[:, :, start:start + 8], v[:, :, start:start + 8], eta[:, :, start:start + 8]
        z = torch.nn.functional.layer_norm(ks @ W + b.unsqueeze(-2), (4,), eps=1e-6) * gamma[:, None] + beta[:, None]
        loss = (es.unsqueeze(-1) * 0.5 * (z + ks - vs).square()).sum()
        dW, db = torch.autograd.grad(loss, (W, b))
        W, b = W - scale[-1] * dW, b - scale[-1] * db
    torch.testing.assert_close(W_end, W.detach())
    torch.testing.assert_close(b_end, b.detach())


def test_ttt_unit_learning_rate_and_token_scale():
    unit = TTT["TTTLinear"](48, (0, 2), {}, ttt_n_heads=3)
    torch.testing.assert_close(unit.token_scale(), 1.0 / torch.arange(1, 17, dtype=torch.float32))
    with torch.no_grad():
        unit.token_offset.fill_(-2.0)
    assert unit.token_scale().min() == 0  # clamped at zero: never a negative step
    assert unit.W0.shape == (3, 16, 16) and unit.b0.shape == (3, 16)


# ---------------------------------------------------------------- the seeds


@pytest.fixture(scope="module", params=["rwkv6", "ttt_linear"])
def seed_module(request):
    return load_design_module(load_seed(request.param))


@pytest.mark.parametrize("d_model", [32, 48, 144, 288])
def test_seed_builds_and_runs_at_width(seed_module, d_model):
    model = seed_module.build_model(d_model=d_model, n_block=2)
    with torch.no_grad():
        logits = model(torch.randint(0, 256, (1, 21)))
    assert logits.shape == (1, 21, 256) and torch.isfinite(logits).all()


def test_seed_runs_in_bf16(seed_module):
    model = seed_module.build_model(d_model=32, n_block=2, dtype=torch.bfloat16)
    with torch.no_grad():
        logits = model(torch.randint(0, 256, (2, 37)))
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits.float()).all()


def test_seed_unit_tests_pass(seed_module):
    tests = find_gau_tests(seed_module.__dict__)
    assert len(tests) >= 4
    for test in tests.values():
        test(device="cpu", dtype=torch.float32)
