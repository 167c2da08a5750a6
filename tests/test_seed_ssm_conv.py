"""Mamba-2 (SSD) and Hyena (long convolution) seeds: fast forms against reference forms.

ssd_chunked vs ssd_recurrent and hyena_fftconv vs hyena_conv_recurrent agree on outputs
and gradients; decoding token by token with the recurrent forms reproduces the parallel
forms; states hand off between segments; the seeds build at several widths and in bf16.
"""

import math

import pytest
import torch
from torch.nn import functional as F

from designs.model import load_design_module
from designs.seeds import load_seed, unit_namespace

SSD = unit_namespace("Mamba2Mixer")
HYENA = unit_namespace("HyenaOperator")


def ssd_inputs(b, T, H, P, G, N, dtype=torch.float32, seed=0, grad=False):
    """Inputs in the ranges a trained Mamba-2 sees: dt = softplus(.), A = -exp(.) in [-16, -1]."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, T, H, P, generator=gen, dtype=dtype)
    dt = F.softplus(torch.randn(b, T, H, generator=gen, dtype=dtype) - 2)
    A = -torch.exp(torch.rand(H, generator=gen, dtype=dtype) * math.log(16))
    shape = (b, T, N) if G is None else (b, T, G, N)
    B = torch.randn(*shape, generator=gen, dtype=dtype) / math.sqrt(N)
    C = torch.randn(*shape, generator=gen, dtype=dtype) / math.sqrt(N)
    tensors = [x, dt, A, B, C]
    return [t.requires_grad_(grad) for t in tensors]


def grads(fn, inputs, seed=1):
    """Outputs of fn(*inputs) and the gradients of a random projection of them."""
    y, state = fn(*inputs)
    gen = torch.Generator().manual_seed(seed)
    loss = (y * torch.randn(y.shape, generator=gen, dtype=y.dtype)).sum() \
        + (state * torch.randn(state.shape, generator=gen, dtype=state.dtype)).sum()
    return y, state, torch.autograd.grad(loss, inputs)


# ---------------------------------------------------------------- Mamba-2: SSD


@pytest.mark.parametrize("b,T,H,P,G,N,Q", [
    (1, 64, 4, 16, 1, 16, 64),   # exactly one chunk
    (2, 37, 4, 8, 1, 16, 16),    # T not a multiple of the chunk
    (2, 5, 2, 8, 2, 8, 16),      # shorter than one chunk, two groups
    (3, 70, 6, 4, 3, 4, 32),     # three groups of two heads
    (2, 50, 4, 32, None, 32, 16),  # B, C given as [B, T, N] (one group)
])
def test_ssd_chunked_matches_recurrent_outputs_and_grads(b, T, H, P, G, N, Q):
    inputs = ssd_inputs(b, T, H, P, G, N, grad=True)
    y1, h1, g1 = grads(lambda *a: SSD["ssd_chunked"](*a, chunk_size=Q), inputs)
    y2, h2, g2 = grads(SSD["ssd_recurrent"], inputs)
    torch.testing.assert_close(y1, y2, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(h1, h2, atol=1e-5, rtol=1e-4)
    for name, a, r in zip("x dt A B C".split(), g1, g2):
        torch.testing.assert_close(a, r, atol=1e-4, rtol=1e-4, msg=f"gradient of {name}")


def test_ssd_chunked_matches_recurrent_in_fp64_tightly():
    inputs = ssd_inputs(2, 45, 4, 8, 2, 8, dtype=torch.float64, grad=True)
    y1, h1, g1 = grads(lambda *a: SSD["ssd_chunked"](*a, chunk_size=16), inputs)
    y2, h2, g2 = grads(SSD["ssd_recurrent"], inputs)
    assert y1.dtype == torch.float64
    for a, r in zip((y1, h1, *g1), (y2, h2, *g2)):
        torch.testing.assert_close(a, r, atol=1e-11, rtol=1e-10)


def test_ssd_decoding_token_by_token_equals_chunked():
    x, dt, A, B, C = ssd_inputs(2, 23, 4, 8, 1, 16)
    y, final = SSD["ssd_chunked"](x, dt, A, B, C, chunk_size=8)
    state, ys = None, []
    for t in range(x.shape[1]):
        y_t, state = SSD["ssd_recurrent"](x[:, t:t + 1], dt[:, t:t + 1], A, B[:, t:t + 1], C[:, t:t + 1], state)
        ys.append(y_t)
    torch.testing.assert_close(torch.cat(ys, dim=1), y, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(state, final, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("split", [7, 16, 30])
def test_ssd_chunked_hands_state_off(split):
    x, dt, A, B, C = ssd_inputs(2, 41, 4, 8, 2, 8)
    y, final = SSD["ssd_chunked"](x, dt, A, B, C, chunk_size=16)
    _, mid = SSD["ssd_chunked"](x[:, :split], dt[:, :split], A, B[:, :split], C[:, :split], chunk_size=16)
    y_tail, final_tail = SSD["ssd_chunked"](x[:, split:], dt[:, split:], A, B[:, split:], C[:, split:],
                                            chunk_size=16, state=mid)
    assert mid.shape == (2, 4, 8, 8)  # [B, H, P, N]
    torch.testing.assert_close(y_tail, y[:, split:], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(final_tail, final, atol=1e-5, rtol=1e-4)


def test_ssd_bf16_inputs_compute_in_fp32():
    x, dt, A, B, C = ssd_inputs(1, 40, 2, 8, 1, 8)
    y32, h32 = SSD["ssd_chunked"](x, dt, A, B, C, chunk_size=16)
    y16, h16 = SSD["ssd_chunked"](*(t.bfloat16() for t in (x, dt, A, B, C)), chunk_size=16)
    assert y16.dtype == torch.bfloat16 and h16.dtype == torch.float32
    torch.testing.assert_close(y16.float(), y32, atol=0.1, rtol=0.05)


def test_mamba2_mixer_decay_and_chunk_size_invariance():
    Mixer = SSD["Mamba2Mixer"]
    torch.manual_seed(0)
    mixer = Mixer(48, (0, 2), {}, mamba2_chunk_size=16)
    dt = F.softplus(mixer.dt_bias)
    assert 1e-4 <= dt.min() and dt.max() <= 0.1 + 1e-6  # dt log-uniform in [0.001, 0.1] at init
    decay = torch.exp(-torch.exp(mixer.A_log) * dt)
    assert ((decay > 0) & (decay < 1)).all()  # exp(dt A) with A = -exp(A_log) < 0
    assert mixer.head_dim * mixer.n_heads == 96  # expand 2, heads by count
    X = torch.randn(2, 45, 48)
    with torch.no_grad():
        y16, _ = mixer(X)
        mixer.chunk_size = 64
        y64, _ = mixer(X)
    torch.testing.assert_close(y16, y64, atol=1e-5, rtol=1e-4)


# ---------------------------------------------------------------- Hyena: long convolution


def conv_inputs(b, D, T, dtype=torch.float32, seed=0, extra=0):
    gen = torch.Generator().manual_seed(seed)
    u = torch.randn(b, D, T, generator=gen, dtype=dtype)
    decay = torch.exp(-torch.arange(T + extra, dtype=dtype) / 40)
    k = torch.randn(D, T + extra, generator=gen, dtype=dtype) * decay / 4
    bias = torch.randn(D, generator=gen, dtype=dtype)
    return u, k, bias


@pytest.mark.parametrize("b,D,T", [(1, 1, 1), (2, 3, 17), (2, 8, 64), (1, 4, 129)])
def test_hyena_fftconv_matches_direct_outputs_and_grads(b, D, T):
    u, k, bias = (t.requires_grad_() for t in conv_inputs(b, D, T))
    w = torch.randn(b, D, T, generator=torch.Generator().manual_seed(3))
    y1 = HYENA["hyena_fftconv"](u, k, bias)
    g1 = torch.autograd.grad((y1 * w).sum(), (u, k, bias))
    y2, state = HYENA["hyena_conv_recurrent"](u, k, bias)
    g2 = torch.autograd.grad((y2 * w).sum(), (u, k, bias))
    torch.testing.assert_close(y1, y2, atol=1e-5, rtol=1e-5)
    for name, a, r in zip(("u", "k", "bias"), g1, g2):
        torch.testing.assert_close(a, r, atol=1e-5, rtol=1e-5, msg=f"gradient of {name}")
    assert torch.equal(state, u)  # a long convolution's state is its input history


def test_hyena_fftconv_backward_gradcheck_and_exact_causality():
    u, k, bias = (t.requires_grad_() for t in conv_inputs(2, 2, 6, dtype=torch.float64))
    assert torch.autograd.gradcheck(HYENA["hyena_fftconv"], (u, k, bias), fast_mode=True)
    u32 = conv_inputs(2, 2, 40)[0].requires_grad_()
    HYENA["hyena_fftconv"](u32, k.detach().float().repeat(1, 7), bias.detach().float())[..., :17].sum().backward()
    assert u32.grad[..., 17:].abs().max() == 0 and u32.grad[..., :17].abs().min() > 0  # exactly zero, not 1e-8


def test_hyena_fftconv_uses_the_first_taps_of_a_longer_filter():
    u, k, bias = conv_inputs(2, 4, 20, dtype=torch.float64, extra=30)
    y, _ = HYENA["hyena_conv_recurrent"](u, k, bias)
    torch.testing.assert_close(HYENA["hyena_fftconv"](u, k, bias), y, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("split", [1, 9, 24])
def test_hyena_decoding_and_state_hand_off(split):
    u, k, bias = conv_inputs(2, 5, 25)
    y = HYENA["hyena_fftconv"](u, k, bias)
    state, ys = None, []
    for t in range(split):  # token by token
        y_t, state = HYENA["hyena_conv_recurrent"](u[..., t:t + 1], k, bias, state)
        ys.append(y_t)
    y_tail, state = HYENA["hyena_conv_recurrent"](u[..., split:], k, bias, state)  # then the rest at once
    torch.testing.assert_close(torch.cat(ys + [y_tail], dim=-1), y, atol=1e-5, rtol=1e-5)
    assert state.shape == (2, 5, 25)


def hyena_operator(**kwargs):
    torch.manual_seed(0)
    return HYENA["HyenaOperator"](32, (0, 2), {}, **kwargs)


def test_hyena_filters_depend_on_position_only_and_decay():
    op = hyena_operator(hyena_max_len=256)
    with torch.no_grad():
        long, short = op.filter(200), op.filter(30)
        assert long.shape == (2, 32, 200)  # [order, channels, T]
        torch.testing.assert_close(long[..., :30], short)  # any length: a prefix of the same filter
        _, t = op.filter.features(256, "cpu")
        rates = torch.linspace(*op.filter.decay, 32).abs()
        window = torch.exp(-t[:, None] * rates)
        assert (window.diff(dim=0) < 0).all() and window[-1].max() < 0.25 and window[-1].min() < 0.01
    assert op.filter.freq.eq(14.0).all()  # sine frequency w = 14 (paper's Pile models)


def test_hyena_operator_matches_its_recurrent_form():
    """The operator, recomputed with hyena_conv_recurrent in place of the FFT."""
    op = hyena_operator(hyena_max_len=64)
    X = torch.randn(2, 21, 32)
    with torch.no_grad():
        Y, _ = op(X)
        streams = op.short_conv(op.in_proj(X).transpose(1, 2))[..., :21]
        *gates, v = streams.split(32, dim=1)
        k = op.filter(21)
        for n in range(2):
            v = gates[n] * HYENA["hyena_conv_recurrent"](v, k[n], op.filter.bias[n])[0]
        torch.testing.assert_close(op.out_proj(v.transpose(1, 2)), Y, atol=1e-5, rtol=1e-4)


def test_hyena_length_limit_and_parameters_independent_of_it():
    short, long = hyena_operator(hyena_max_len=64), hyena_operator(hyena_max_len=4096)
    assert sum(p.numel() for p in short.parameters()) == sum(p.numel() for p in long.parameters())
    with pytest.raises(ValueError, match="exceeds hyena_max_len 64"):
        short(torch.randn(1, 65, 32))
    with pytest.raises(ValueError, match="odd"):
        hyena_operator(hyena_filter_emb_dim=32)


# ---------------------------------------------------------------- both seeds


@pytest.fixture(scope="module", params=["mamba2", "hyena"])
def seed_module(request):
    return request.param, load_design_module(load_seed(request.param))


@pytest.mark.parametrize("d_model", [32, 48, 144])
def test_seed_builds_and_runs(seed_module, d_model):
    _, module = seed_module
    model = module.build_model(d_model=d_model, n_block=2)
    loss = model.loss(torch.randint(0, 256, (2, 41)))
    loss.backward()
    assert 0 < loss.item() - math.log(256) < 1.0  # fan-in init: ~log(V) + var(logits)/2, var ~ 1
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_seed_runs_in_bf16(seed_module):
    _, module = seed_module
    model = module.build_model(d_model=32, n_block=1, dtype=torch.bfloat16)
    with torch.no_grad():
        logits = model(torch.randint(0, 256, (1, 20)))
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits).all()


def test_special_inits_survive_the_lm_init(seed_module):
    name, module = seed_module
    model = module.build_model(d_model=64, n_block=2)
    unit = model.blocks[1].mixer
    if name == "mamba2":
        assert unit.D.eq(1).all() and unit.norm_weight.eq(1).all()
        assert 1 <= torch.exp(unit.A_log).min() and torch.exp(unit.A_log).max() <= 16 + 1e-4
        assert F.softplus(unit.dt_bias).max() <= 0.1 + 1e-6
    else:
        assert unit.filter.freq.eq(14.0).all() and unit.filter.bias.std() > 0.3
