"""DeltaNet and Gated DeltaNet seeds: chunked delta-rule ops against the recurrent references."""

import math

import pytest
import torch
from torch.nn import functional as F

from designs.model import load_design_module
from designs.seeds import load_seed, unit_namespace

DELTA = unit_namespace("DeltaNetMixer")
GATED = unit_namespace("GatedDeltaNetMixer")


def inputs(B, H, T, K, V, dtype=torch.float64, seed=0, decay=1.0):
    """q, k (unit norm, as the mixers make them), v, beta in (0, 1), log_alpha <= 0, a random state."""
    gen = torch.Generator().manual_seed(seed)
    q = F.normalize(torch.randn(B, H, T, K, generator=gen, dtype=dtype), dim=-1)
    k = F.normalize(torch.randn(B, H, T, K, generator=gen, dtype=dtype), dim=-1)
    v = torch.randn(B, H, T, V, generator=gen, dtype=dtype)
    beta = torch.rand(B, H, T, generator=gen, dtype=dtype)
    log_alpha = -decay * torch.rand(B, H, T, generator=gen, dtype=dtype)
    state = torch.randn(B, H, K, V, generator=gen, dtype=dtype)
    return q, k, v, beta, log_alpha, state


def run(gated, form, q, k, v, beta, log_alpha, state=None, chunk_size=None):
    """One of the four ops: (o, final_state)."""
    if gated:
        args = (q, k, v, beta, log_alpha)
        fn = GATED["gated_delta_rule_chunked" if form == "chunked" else "gated_delta_rule_recurrent"]
    else:
        args = (q, k, v, beta)
        fn = DELTA["delta_rule_chunked" if form == "chunked" else "delta_rule_recurrent"]
    if form == "chunked":
        return fn(*args, chunk_size=chunk_size, state=state)
    return fn(*args, state=state)


# (B, H, T, K, V, chunk): T shorter than a chunk, equal to it, not divisible by it, a multiple of it
SHAPES = [(1, 1, 5, 4, 4, 16), (2, 2, 16, 8, 4, 16), (2, 3, 37, 6, 10, 8), (1, 2, 48, 16, 16, 16),
          (3, 1, 23, 4, 12, 64), (2, 2, 19, 5, 3, 1)]


@pytest.mark.parametrize("gated", [False, True], ids=["delta", "gated"])
@pytest.mark.parametrize("B,H,T,K,V,chunk", SHAPES)
@pytest.mark.parametrize("with_state", [False, True], ids=["zero_state", "given_state"])
def test_chunked_equals_recurrent_outputs_and_gradients(gated, B, H, T, K, V, chunk, with_state):
    q, k, v, beta, log_alpha, state = (x.requires_grad_() for x in inputs(B, H, T, K, V))
    state_in = state if with_state else None
    leaves = (q, k, v, beta, log_alpha, state) if gated else (q, k, v, beta, state)
    if not with_state:
        leaves = leaves[:-1]
    results = []
    for form in ("recurrent", "chunked"):
        o, s = run(gated, form, q, k, v, beta, log_alpha, state_in, chunk)
        loss = (o * torch.linspace(-1, 1, o.shape[-1], dtype=o.dtype)).sin().sum() + s.pow(2).sum()
        results.append((o, s, torch.autograd.grad(loss, leaves)))
    (o_ref, s_ref, g_ref), (o, s, g) = results
    assert o.shape == (B, H, T, V) and s.shape == (B, H, K, V)
    torch.testing.assert_close(o, o_ref, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(s, s_ref, atol=1e-10, rtol=1e-10)
    for grad, grad_ref in zip(g, g_ref):
        torch.testing.assert_close(grad, grad_ref, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("gated", [False, True], ids=["delta", "gated"])
def test_fp32_chunked_matches_fp64_reference(gated):
    q, k, v, beta, log_alpha, state = inputs(2, 2, 70, 32, 32)
    o_ref, s_ref = run(gated, "recurrent", q, k, v, beta, log_alpha, state)
    o, s = run(gated, "chunked", *(x.float() for x in (q, k, v, beta, log_alpha, state)), chunk_size=32)
    assert o.dtype == s.dtype == torch.float32
    torch.testing.assert_close(o.double(), o_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(s.double(), s_ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("gated", [False, True], ids=["delta", "gated"])
@pytest.mark.parametrize("chunk", [1, 3, 16, 64])
def test_every_chunk_size_gives_the_same_result(gated, chunk):
    q, k, v, beta, log_alpha, state = inputs(2, 2, 50, 8, 8)
    o_ref, s_ref = run(gated, "chunked", q, k, v, beta, log_alpha, state, chunk_size=50)
    o, s = run(gated, "chunked", q, k, v, beta, log_alpha, state, chunk_size=chunk)
    torch.testing.assert_close(o, o_ref, atol=1e-11, rtol=1e-11)
    torch.testing.assert_close(s, s_ref, atol=1e-11, rtol=1e-11)


@pytest.mark.parametrize("gated", [False, True], ids=["delta", "gated"])
def test_token_by_token_decoding_equals_chunked(gated):
    q, k, v, beta, log_alpha, _ = inputs(2, 3, 29, 8, 6)
    o_full, s_full = run(gated, "chunked", q, k, v, beta, log_alpha, chunk_size=8)
    state, outputs = None, []
    for t in range(q.shape[2]):
        step = slice(t, t + 1)
        o_t, state = run(gated, "recurrent", q[:, :, step], k[:, :, step], v[:, :, step], beta[:, :, step],
                         log_alpha[:, :, step], state)
        outputs.append(o_t)
    torch.testing.assert_close(torch.cat(outputs, dim=2), o_full, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(state, s_full, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("gated", [False, True], ids=["delta", "gated"])
@pytest.mark.parametrize("cut", [1, 13, 16, 30])
def test_state_hand_off(gated, cut):
    """Chunked on a prefix, then chunked on the rest from the prefix's state == chunked on the whole."""
    q, k, v, beta, log_alpha, _ = inputs(2, 2, 45, 8, 8)
    o_full, s_full = run(gated, "chunked", q, k, v, beta, log_alpha, chunk_size=16)
    head, tail = slice(0, cut), slice(cut, None)
    o1, s1 = run(gated, "chunked", q[:, :, head], k[:, :, head], v[:, :, head], beta[:, :, head],
                 log_alpha[:, :, head], chunk_size=16)
    o2, s2 = run(gated, "chunked", q[:, :, tail], k[:, :, tail], v[:, :, tail], beta[:, :, tail],
                 log_alpha[:, :, tail], state=s1, chunk_size=16)
    torch.testing.assert_close(torch.cat((o1, o2), dim=2), o_full, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(s2, s_full, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("chunk", [4, 16])
def test_gated_rule_without_decay_is_the_delta_rule(chunk):
    q, k, v, beta, _, state = inputs(2, 2, 37, 8, 6)
    no_decay = torch.zeros_like(beta)
    for form in ("chunked", "recurrent"):
        o_gated, s_gated = run(True, form, q, k, v, beta, no_decay, state, chunk)
        o_delta, s_delta = run(False, form, q, k, v, beta, no_decay, state, chunk)
        torch.testing.assert_close(o_gated, o_delta, atol=1e-12, rtol=1e-12)
        torch.testing.assert_close(s_gated, s_delta, atol=1e-12, rtol=1e-12)


def test_delta_rule_replaces_the_value_under_a_key():
    """beta = 1, orthonormal keys: reading key k returns the last value written under k, not a sum."""
    _, _, v, _, _, _ = inputs(1, 1, 6, 8, 4)
    keys = torch.eye(8, dtype=torch.float64)[[0, 1, 2, 3, 1, 5]][None, None]  # key e1 written twice
    queries = keys.clone()
    queries[:, :, 5] = keys[:, :, 1]
    beta = torch.ones(1, 1, 6, dtype=torch.float64)
    for gated in (False, True):
        o, _ = run(gated, "chunked", queries, keys, v, beta, torch.zeros_like(beta), chunk_size=4)
        torch.testing.assert_close(o[:, :, :5], v[:, :, :5], atol=1e-12, rtol=0)
        torch.testing.assert_close(o[:, :, 5], v[:, :, 4], atol=1e-12, rtol=0)  # replaced, not added


def test_gated_strong_decay_stays_finite_and_exact():
    """Cumulative log decays of -1000 within a chunk: no overflow, still equal to the recurrence."""
    q, k, v, beta, log_alpha, state = inputs(1, 2, 40, 4, 4, decay=100.0)
    o_ref, s_ref = run(True, "recurrent", q, k, v, beta, log_alpha, state)
    o, s = run(True, "chunked", q, k, v, beta, log_alpha, state, chunk_size=32)
    assert torch.isfinite(o).all() and torch.isfinite(s).all()
    torch.testing.assert_close(o, o_ref, atol=1e-10, rtol=1e-10)
    o, _ = run(True, "chunked", *(x.float() for x in (q, k, v, beta, log_alpha, state)), chunk_size=32)
    assert torch.isfinite(o).all()


@pytest.mark.parametrize("gated", [False, True], ids=["delta", "gated"])
def test_half_precision_inputs_are_computed_in_fp32(gated):
    q, k, v, beta, log_alpha, _ = inputs(1, 2, 40, 16, 16, dtype=torch.float32)
    o_ref, _ = run(gated, "chunked", q, k, v, beta, log_alpha, chunk_size=16)
    low = [x.bfloat16() for x in (q, k, v, beta)] + [log_alpha]
    o, s = run(gated, "chunked", *low, chunk_size=16)
    assert o.dtype == torch.bfloat16 and s.dtype == torch.float32
    torch.testing.assert_close(o.float(), o_ref, atol=0.1, rtol=0.05)


# ---------------------------------------------------------------- the seeds


@pytest.fixture(scope="module", params=["deltanet", "gated_deltanet"])
def seed_module(request):
    return request.param, load_design_module(load_seed(request.param))


@pytest.mark.parametrize("d_model", [32, 48, 144])
def test_seed_builds_and_runs_in_bf16(seed_module, d_model):
    _, module = seed_module
    model = module.build_model(d_model=d_model, n_block=1, dtype=torch.bfloat16)
    logits = model(torch.randint(0, 256, (2, 37)))
    assert logits.dtype == torch.bfloat16 and logits.shape == (2, 37, 256)
    assert torch.isfinite(logits).all()


def test_seed_output_does_not_depend_on_the_chunk_size(seed_module):
    name, module = seed_module
    key = "deltanet_chunk_size" if name == "deltanet" else "gdn_chunk_size"
    tokens = torch.randint(0, 256, (2, 45))
    torch.manual_seed(0)
    reference = module.build_model(d_model=32, n_block=1, **{key: 64})
    with torch.no_grad():
        expected = reference(tokens)
        for chunk in (5, 16):
            model = module.build_model(d_model=32, n_block=1, **{key: chunk})
            model.load_state_dict(reference.state_dict())
            torch.testing.assert_close(model(tokens), expected, atol=1e-5, rtol=1e-5)


def test_gated_decay_init_survives_the_lm_init():
    """A = exp(A_log) in [1, 16] and dt = softplus(dt_bias) in [1e-3, 0.1] (Mamba2), so alpha is in (0, 1)."""
    model = load_design_module(load_seed("gated_deltanet")).build_model(d_model=96, n_block=3)
    for block in model.blocks:
        mixer = block.mixer
        A, dt = mixer.A_log.exp(), F.softplus(mixer.dt_bias)
        assert A.min() >= 1 - 1e-5 and A.max() <= 16 + 1e-4
        assert dt.min() >= 1e-3 * (1 - 1e-4) and dt.max() <= 0.1 * (1 + 1e-4)
        alpha = torch.exp(-A * F.softplus(torch.randn(1000, mixer.n_heads) + mixer.dt_bias))
        assert (alpha > 0).all() and (alpha < 1).all()
    assert not torch.equal(model.blocks[0].mixer.A_log, model.blocks[1].mixer.A_log)


def test_head_shapes():
    delta = DELTA["DeltaNetMixer"](48, (0, 1), {}, deltanet_heads=4)
    assert (delta.n_heads, delta.head_dim) == (4, 12)
    gated = GATED["GatedDeltaNetMixer"](48, (0, 1), {})
    assert (gated.n_heads, gated.key_dim, gated.value_dim) == (2, 36, 72)
    with pytest.raises(ValueError, match="divisible"):
        DELTA["DeltaNetMixer"](36, (0, 1), {}, deltanet_heads=8)
    with pytest.raises(ValueError, match="divisible"):
        GATED["GatedDeltaNetMixer"](32, (0, 1), {}, gdn_heads=5)


def test_mixers_chain_the_unit_tests():
    for namespace in (DELTA, GATED):
        tests = [f for f in namespace.values() if getattr(f, "is_gau_test", False)]
        assert len(tests) >= 2
        for test in tests:
            test()


BOTH_CODE = '''
from designs.gau import GAUBase


class BothMixers(GAUBase):
    """Test root: DeltaNet then Gated DeltaNet mixers in one block (as a hybrid would)."""

    def __init__(self, embed_dim, block_loc, kwarg_all, device=None, dtype=None, **kwargs):
        super().__init__(embed_dim, block_loc, kwarg_all)
        unit_kwargs = dict(embed_dim=embed_dim, block_loc=block_loc, kwarg_all=kwarg_all, device=device,
                           dtype=dtype, **kwarg_all)
        self.delta = DeltaNetMixer(**unit_kwargs)
        self.gated = GatedDeltaNetMixer(**unit_kwargs)

    def _forward(self, X, **Z):
        H, Z = self.delta(X, **Z)
        H, Z = self.gated(X + H, **Z)
        return X + H, Z
'''


def test_both_mixers_compose_into_one_design():
    """Their top-level names and hyperparameter names do not clash."""
    from designs.gau import UnitSpec
    from designs.tree import Unit, UnitTree

    delta, gated = load_seed("deltanet"), load_seed("gated_deltanet")
    units = {"BothMixers": Unit("BothMixers", BOTH_CODE, UnitSpec("BothMixers"),
                                ["DeltaNetMixer", "GatedDeltaNetMixer"])}
    units["DeltaNetMixer"] = delta.units["DeltaNetMixer"]
    units["GatedDeltaNetMixer"] = gated.units["GatedDeltaNetMixer"]
    tree = UnitTree("both", "BothMixers", units).validate()
    assert not set(units["DeltaNetMixer"].args) & set(units["GatedDeltaNetMixer"].args)
    model = load_design_module(tree).build_model(d_model=32, n_block=1)
    assert model(torch.randint(0, 256, (1, 9))).shape == (1, 9, 256)
