import math

import torch
from torch import nn
from torch.nn import functional as F

from designs.gau import GAUBase, gau_test


def gated_delta_rule_recurrent(q, k, v, beta, log_alpha, state=None):
    """The gated delta rule, one token at a time: the reference form (Yang, Kautz, Hatamizadeh, 2024).

    In the paper's convention the state is S_t in R^{V x K} and
        S_t = S_{t-1} (alpha_t (I - beta_t k_t k_t^T)) + beta_t v_t k_t^T,   o_t = S_t q_t
    with alpha_t = exp(log_alpha_t) in (0, 1]: Mamba2's scalar decay of the whole memory
    (forget fast) combined with DeltaNet's replacement of the value stored under k_t
    (edit precisely). alpha = 1 gives the delta rule. The state tensor holds the transpose
    M_t = S_t^T (keys along dim -2, as in flash-linear-attention):
        M' = alpha_t M_{t-1},   M_t = M' + beta_t k_t (v_t - M'^T k_t)^T,   o_t = M_t^T q_t.

    q, k: [B, H, T, K] (k L2-normalized in Gated DeltaNet); v: [B, H, T, V];
    beta: [B, H, T] in (0, 1); log_alpha: [B, H, T], <= 0; state: [B, H, K, V] or None.
    Returns (o: [B, H, T, V] in v's dtype, final state: [B, H, K, V] in the compute dtype,
    fp32 for half-precision inputs). Cost: O(T K V), T sequential steps.
    """
    B, H, T, K = k.shape
    V = v.shape[-1]
    out_dtype = v.dtype
    dtype = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype
    q, k, v, beta = q.to(dtype), k.to(dtype), v.to(dtype), beta.to(dtype)
    alpha = log_alpha.to(dtype).exp()
    S = torch.zeros(B, H, K, V, device=q.device, dtype=dtype) if state is None else state.to(dtype)
    outputs = []
    for t in range(T):
        k_t = k[:, :, t]
        S = alpha[:, :, t, None, None] * S
        recalled = torch.einsum("bhk,bhkv->bhv", k_t, S)
        S = S + beta[:, :, t, None, None] * k_t[..., :, None] * (v[:, :, t] - recalled)[..., None, :]
        outputs.append(torch.einsum("bhk,bhkv->bhv", q[:, :, t], S))
    o = torch.stack(outputs, dim=2) if outputs else torch.zeros(B, H, 0, V, device=v.device, dtype=dtype)
    return o.to(out_dtype), S


def gated_delta_rule_chunked(q, k, v, beta, log_alpha, chunk_size=64, state=None):
    """The gated delta rule in chunkwise-parallel form (Yang, Kautz, Hatamizadeh, 2024, section 3.2).

    Computes exactly what `gated_delta_rule_recurrent` computes (same shapes, state = S^T,
    [B, H, K, V]), looping over chunks only. Within a chunk of C tokens let
    g_i = log_alpha_1 + ... + log_alpha_i (cumulative log decay from the chunk start),
    gamma_i = exp(g_i) and Gamma[i, j] = exp(g_i - g_j) for j <= i (0 above the diagonal).
    The UT transform of the delta rule, with decays folded in:
        A = tril(diag(beta) K K^T * Gamma, -1)
        W = (I + A)^{-1} diag(beta * gamma) K,   U = (I + A)^{-1} diag(beta) V
    (the inverse of a unit lower-triangular C x C matrix per chunk, by a triangular solve).
    The pseudo-values of a chunk entered with state M are u = U - W M, and
        M_next  = gamma_C M + (diag(gamma_C / gamma) K)^T u
        O_chunk = diag(gamma) Q M + (Q K^T * Gamma) u.
    The loop over the T / C chunks computes only u and M_next; everything else runs for
    all chunks at once. Decays enter only as exp of differences of cumulative sums that
    are <= 0, computed in fp32 (or fp64) and masked before exponentiating: nothing overflows.

    q, k: [B, H, T, K]; v: [B, H, T, V]; beta: [B, H, T]; log_alpha: [B, H, T] (<= 0);
    state: [B, H, K, V] or None. chunk_size: C (any positive integer: exact for every C;
    the tail of a T that C does not divide is padded with beta = 0, log_alpha = 0 tokens,
    which leave the state alone). With log_alpha = 0 this is `delta_rule_chunked` of DeltaNet.
    Returns (o: [B, H, T, V] in v's dtype, final state: [B, H, K, V], fp32 for half inputs).
    Cost: O(T C (C + K + V) + T K V) time per head, T / C sequential steps.
    """
    B, H, T, K = k.shape
    V = v.shape[-1]
    out_dtype = v.dtype
    dtype = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype
    M = torch.zeros(B, H, K, V, device=q.device, dtype=dtype) if state is None else state.to(dtype)
    if T == 0:
        return v.new_zeros(B, H, 0, V).to(out_dtype), M
    C = max(1, min(int(chunk_size), T))
    N = -(-T // C)
    pad = N * C - T
    q, k, v, beta = q.to(dtype), k.to(dtype), v.to(dtype), beta.to(dtype)
    log_alpha = log_alpha.to(torch.promote_types(dtype, torch.float32))
    if pad:
        q, k, v = (F.pad(x, (0, 0, 0, pad)) for x in (q, k, v))
        beta, log_alpha = F.pad(beta, (0, pad)), F.pad(log_alpha, (0, pad))
    # Batch and heads flattened, time cut into chunks: [B H, N, C, .]; the state is [B H, K, V].
    q, k, v = q.reshape(B * H, N, C, K), k.reshape(B * H, N, C, K), v.reshape(B * H, N, C, V)
    beta = beta.reshape(B * H, N, C, 1)
    g = log_alpha.reshape(B * H, N, C).cumsum(-1)
    upper = torch.ones(C, C, dtype=torch.bool, device=q.device).triu(0)  # j >= i
    decay = (g[..., :, None] - g[..., None, :]).masked_fill(upper.triu(1), -math.inf).exp().to(dtype)  # Gamma
    gamma = g.exp().to(dtype)[..., None]  # [B H, N, C, 1]
    k_beta = k * beta
    A = (k_beta @ k.transpose(-1, -2) * decay).masked_fill(upper, 0)  # j < i only
    eye = torch.eye(C, device=q.device, dtype=dtype).expand_as(A)
    inverse = torch.linalg.solve_triangular(A, eye, upper=False, unitriangular=True)
    W, U = inverse @ (k_beta * gamma), inverse @ (v * beta)
    k_to_end = k * (g[..., -1:] - g).exp().to(dtype)[..., None]  # diag(gamma_C / gamma) K
    M = M.reshape(B * H, K, V)
    entering, pseudo_values = [], []
    steps = zip(W.unbind(1), U.unbind(1), k_to_end.transpose(-1, -2).unbind(1), gamma[:, :, -1:].unbind(1))
    for W_n, U_n, k_n, gamma_n in steps:
        entering.append(M)
        u = torch.baddbmm(U_n, W_n, M, alpha=-1)  # U - W M
        pseudo_values.append(u)
        M = torch.baddbmm(gamma_n * M, k_n, u)  # gamma_C M + Kd^T u
    entering = torch.stack(entering, dim=1)  # [B H, N, K, V]: the state before each chunk
    scores = q @ k.transpose(-1, -2) * decay  # causal: Gamma is 0 for j > i
    o = (q * gamma) @ entering + scores @ torch.stack(pseudo_values, dim=1)
    o = o.view(B, H, N * C, V)[:, :, :T]
    return o.to(out_dtype), M.view(B, H, K, V)


class GatedDeltaNetMixer(GAUBase):
    """Gated DeltaNet token mixer (Yang, Kautz, Hatamizadeh, 2024, "Gated Delta Networks").

    DeltaNet's delta-rule memory with Mamba2's data-dependent scalar decay, and an output
    gate. For each head:
        q_t, k_t, v_t = SiLU(CausalConv_4(W_q x)_t), SiLU(CausalConv_4(W_k x)_t), SiLU(CausalConv_4(W_v x)_t)
        q_t, k_t = q_t / ||q_t||_2, k_t / ||k_t||_2
        beta_t = sigmoid(w_beta . x_t)                                      (writing strength)
        alpha_t = exp(-exp(A_log) * softplus(w_a . x_t + dt_bias))           (decay in (0, 1), Mamba2's)
        S_t = S_{t-1} (alpha_t (I - beta_t k_t k_t^T)) + beta_t v_t k_t^T,   o_t = S_t q_t
    then a gated RMSNorm per head and the output projection:
        Y = W_o [RMSNorm(o^h) * SiLU(W_g x)^h]_h.
    Keys use `gdn_expand_k` * embed_dim channels in all and values `gdn_expand_v` times
    that, split over `gdn_heads` heads: 0.75 and 2 as the reference 1.3B configuration
    (6 heads with 256 key and 512 value channels at width 2048), few wide heads. The short convolutions are
    depthwise and causal (width `gdn_conv_size`); no biases. A_log is initialized to
    log U(1, 16) and dt_bias to softplus^{-1}(dt), dt log-uniform in [0.001, 0.1], as Mamba2.

    Training uses `gated_delta_rule_chunked` (chunks of `gdn_chunk_size`); the decoding
    state per head is a head_k x head_v matrix (constant in sequence length).
    Cost per token (d = embed_dim, dk, dv key and value widths, C chunk size): d (2 dk + 3 dv)
    multiply-adds for the projections, about C (3 dk + 2 dv) within chunks and 3 dk dv / H
    for the state.
    Hyperparameters: `gdn_heads`, `gdn_expand_k`, `gdn_expand_v`, `gdn_conv_size`,
    `gdn_chunk_size` (speed only: every value gives the same output; 32 is the fastest on
    CPU at 256 tokens, the paper uses 64 on GPUs).
    """

    def __init__(self, embed_dim, block_loc, kwarg_all, device=None, dtype=None, gdn_heads: int = 2,
                 gdn_expand_k: float = 0.75, gdn_expand_v: float = 2.0, gdn_conv_size: int = 4,
                 gdn_chunk_size: int = 32, **kwargs):
        self.factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__(embed_dim, block_loc, kwarg_all)
        key_dim = int(gdn_expand_k * embed_dim)
        value_dim = int(gdn_expand_v * key_dim)
        if key_dim % gdn_heads or value_dim % gdn_heads or key_dim < gdn_heads:
            raise ValueError(f"GatedDeltaNetMixer: key width {key_dim} and value width {value_dim} "
                             f"(embed_dim {embed_dim}) must be divisible by gdn_heads {gdn_heads}")
        self.n_heads, self.key_dim, self.value_dim = gdn_heads, key_dim, value_dim
        self.chunk_size = gdn_chunk_size
        conv_channels = 2 * key_dim + value_dim
        # One matrix for every input projection; the split is [q | k | v | g | beta | a].
        self.in_proj = nn.Linear(embed_dim, conv_channels + value_dim + 2 * gdn_heads, bias=False,
                                 **self.factory_kwargs)
        self.qkv_conv = nn.Conv1d(conv_channels, conv_channels, gdn_conv_size, groups=conv_channels,
                                  padding=gdn_conv_size - 1, bias=False, **self.factory_kwargs)
        self.A_log = nn.Parameter(torch.empty(gdn_heads, **self.factory_kwargs))
        self.dt_bias = nn.Parameter(torch.empty(gdn_heads, **self.factory_kwargs))
        self.o_norm = nn.RMSNorm(value_dim // gdn_heads, eps=1e-5, **self.factory_kwargs)
        self.out_proj = nn.Linear(value_dim, embed_dim, bias=False, **self.factory_kwargs)
        self._init_weights()

    def _init_weights(self):
        """Mamba2's decay init: A = -exp(A_log) with A_log = log U(1, 16); softplus(dt_bias) = dt."""
        with torch.no_grad():
            self.A_log.copy_(torch.empty_like(self.A_log).uniform_(1, 16).log())
            dt = torch.empty_like(self.dt_bias).uniform_(math.log(1e-3), math.log(1e-1)).exp().clamp(min=1e-4)
            self.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))

    def _forward(self, X, **Z):
        B, T, _ = X.shape
        H, dk, dv = self.n_heads, self.key_dim, self.value_dim
        conv_channels = 2 * dk + dv
        proj = self.in_proj(X)
        # Convolution and delta rule in fp32 at least (CPU has no fast half-precision depthwise conv).
        dtype = torch.promote_types(X.dtype, torch.float32)
        conv = self.qkv_conv
        qkv = F.conv1d(proj[..., :conv_channels].transpose(1, 2).to(dtype), conv.weight.to(dtype),
                       padding=conv.padding, groups=conv.groups)[..., :T]
        qkv = F.silu(qkv)  # [B, 2 dk + dv, T]
        q, k, v = (x.reshape(B, H, -1, T).transpose(-1, -2) for x in qkv.split((dk, dk, dv), dim=1))
        q, k = F.normalize(q, dim=-1, eps=1e-6), F.normalize(k, dim=-1, eps=1e-6)
        gate, b, a = proj[..., conv_channels:].split((dv, H, H), dim=-1)
        beta = torch.sigmoid(b).transpose(1, 2)  # [B, H, T]
        log_alpha = -self.A_log.float().exp() * F.softplus(a.float() + self.dt_bias.float())
        o, _ = gated_delta_rule_chunked(q, k, v, beta, log_alpha.transpose(1, 2), self.chunk_size)
        o = self.o_norm(o.transpose(1, 2).to(X.dtype)) * F.silu(gate).reshape(B, T, H, dv // H)  # [B, T, H, dv / H]
        return self.out_proj(o.reshape(B, T, dv))


@gau_test
def test_gated_delta_rule_chunked_equals_recurrent(device=None, dtype=None):
    torch.manual_seed(0)
    B, H, T, K, V = 2, 2, 11, 4, 6
    q = F.normalize(torch.randn(B, H, T, K, device=device, dtype=torch.float64), dim=-1)
    k = F.normalize(torch.randn(B, H, T, K, device=device, dtype=torch.float64), dim=-1)
    v = torch.randn(B, H, T, V, device=device, dtype=torch.float64)
    beta = torch.rand(B, H, T, device=device, dtype=torch.float64)
    log_alpha = -torch.rand(B, H, T, device=device, dtype=torch.float64)
    o_ref, s_ref = gated_delta_rule_recurrent(q, k, v, beta, log_alpha)
    o, s = gated_delta_rule_chunked(q, k, v, beta, log_alpha, chunk_size=4)
    assert torch.allclose(o, o_ref, atol=1e-10) and torch.allclose(s, s_ref, atol=1e-10)


@gau_test
def test_gated_deltanet_mixer_is_causal(device=None, dtype=None):
    unit = GatedDeltaNetMixer(32, (0, 1), {}, device=device, dtype=dtype, gdn_chunk_size=4)
    X = torch.randn(2, 10, 32, device=device, dtype=dtype)
    X2 = X.clone()
    X2[:, 6:] = torch.randn_like(X2[:, 6:])
    Y, _ = unit(X)
    Y2, _ = unit(X2)
    assert Y.shape == X.shape
    assert torch.allclose(Y[:, :6], Y2[:, :6], atol=1e-5)
    assert not torch.allclose(Y[:, 6:], Y2[:, 6:])
