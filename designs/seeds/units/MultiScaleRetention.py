import torch
from torch import nn
from torch.nn import functional as F

from designs.gau import GAUBase, gau_test


def retention_recurrent(q, k, v, log_gamma, state=None):
    """Retention, one token at a time: the reference form (and the decoding form).

    S_n = gamma_h S_{n-1} + k_n^T v_n;  o_n = q_n S_n, one fixed decay gamma_h per head.

    q, k: [B, H, T, K]; v: [B, H, T, V]; log_gamma: [H] (log gamma_h < 0);
    state: [B, H, K, V] or None (zeros). Returns (o: [B, H, T, V] in q's dtype,
    final state: [B, H, K, V] in fp32, or fp64 for fp64 inputs). Computes in fp32 (or fp64).
    """
    B, H, T, K = q.shape
    dtype, f = q.dtype, torch.promote_types(q.dtype, torch.float32)
    q, k, v = q.to(f), k.to(f), v.to(f)
    gamma = log_gamma.to(f).exp().view(1, H, 1, 1)
    S = q.new_zeros(B, H, K, v.shape[-1]) if state is None else state.to(f)
    outputs = []
    for t in range(T):
        S = gamma * S + k[:, :, t, :, None] * v[:, :, t, None, :]
        outputs.append((q[:, :, t, :, None] * S).sum(-2))
    o = torch.stack(outputs, dim=2) if outputs else v[:, :, :0]
    return o.to(dtype), S


def retention_chunked(q, k, v, log_gamma, chunk_size=64, state=None):
    """Retention in chunks (RetNet's chunkwise recurrent form): the training form.

    The same function as retention_recurrent. Inside a chunk of C tokens the parallel form
    (q k^T * D) v with the decay mask D_ij = gamma^(i-j) (j <= i, else 0); across chunks a loop
    carries the state: o_i += gamma^(i+1) q_i S_prev, S = gamma^C S_prev + sum_j gamma^(C-1-j) k_j^T v_j.
    Decays are built as exp of non-positive log-decay differences (padded positions decay by 1),
    so nothing overflows. With chunk_size >= T this is the parallel form.
    Cost: O(T (C (K + V) + K V)) time per head, O(T C) memory for the masks and scores.

    q, k: [B, H, T, K]; v: [B, H, T, V]; log_gamma: [H] (< 0); state: [B, H, K, V] or None.
    Any T works (padded inside, sliced after). Returns (o: [B, H, T, V] in q's dtype,
    final state: [B, H, K, V] in fp32 or fp64).
    """
    B, H, T, K = q.shape
    V = v.shape[-1]
    dtype, f = q.dtype, torch.promote_types(q.dtype, torch.float32)
    S = q.new_zeros(B, H, K, V, dtype=f) if state is None else state.to(f)
    if T == 0:
        return v[:, :, :0], S
    C = min(chunk_size, T)
    pad = (-T) % C
    N = (T + pad) // C
    q, k = (F.pad(x.to(f), (0, 0, 0, pad)).view(B, H, N, C, K) for x in (q, k))
    v = F.pad(v.to(f), (0, 0, 0, pad)).view(B, H, N, C, V)
    real = torch.arange(T + pad, device=q.device) < T
    g = torch.where(real, log_gamma.to(f).view(H, 1), 0.0)  # [H, N C]: log decay at each position
    b = g.view(H, N, C).cumsum(-1)  # [H, N, C], <= 0, decreasing inside each chunk
    causal = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()
    D = (b.unsqueeze(-1) - b.unsqueeze(-2)).masked_fill(~causal, float("-inf")).exp()  # [H, N, C, C]
    o = ((q @ k.transpose(-1, -2)) * D) @ v  # intra-chunk: [B, H, N, C, V]

    b_end = b[..., -1:]  # [H, N, 1]
    U = (k * (b_end - b).exp().unsqueeze(-1)).transpose(-1, -2) @ v  # [B, H, N, K, V]
    chunk_decay = b_end.exp().unsqueeze(-1)  # [H, N, 1, 1]
    before = []
    for n in range(N):
        before.append(S)
        S = chunk_decay[:, n] * S + U[:, :, n]
    o = o + (q * b.exp().unsqueeze(-1)) @ torch.stack(before, dim=2)
    return o.reshape(B, H, N * C, V)[:, :, :T].to(dtype), S


def retention_rotary(x, base):
    """Rotate channel pairs (i, i + K/2) of x: [B, H, T, K] by position t (RetNet's e^{i t theta})."""
    T, K = x.shape[-2], x.shape[-1]
    inv_freq = base ** (-torch.arange(0, K, 2, device=x.device, dtype=torch.float32) / K)
    angles = torch.outer(torch.arange(T, device=x.device, dtype=torch.float32), inv_freq)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


class MultiScaleRetention(GAUBase):
    """Multi-scale retention (RetNet, Sun et al. 2023): linear attention with a fixed decay per head.

    head h keeps a K x V state decayed by a constant gamma_h = 1 - 2^(-5-h), h = 0..H-1
    (RetNet's gamma = 1 - 2^(-5 - arange(H))), so heads see from ~32 to ~2^(4+H) tokens back:
        q = rot(X W_Q), k = rot(X W_K) (rotary, RetNet's xPos-style e^{i n theta}), v = X W_V
        head_h = (q k^T / sqrt(K) * D_h) v,  D_h[n, m] = gamma_h^(n-m) for m <= n, else 0
        Y = (swish(X W_G) * GroupNorm_H(concat_h head_h)) W_O
    GroupNorm normalizes each head of each token on its own (RetNet's per-head scale
    normalization); the paper's extra normalizations of D and of the scores rescale each
    row of a head by a scalar, which GroupNorm cancels (up to its eps), so they are left out. Trained with retention_chunked (chunks of
    retnet_chunk_size); decoding uses retention_recurrent with a K x V state per head.
    Sizes as in the paper: W_Q, W_K: d x (retnet_expand_k d), W_V, W_G: d x (retnet_expand_v d),
    W_O back to d; about 8 d^2 parameters at expand_k 1, expand_v 2.
    Cost: O(T (C (K + V) + K V)) time per head; a constant-size state per token when decoding.
    Hyperparameters: `retnet_heads` (4), `retnet_expand_k` (1.0), `retnet_expand_v` (2.0),
    `retnet_chunk_size` (64), `retnet_rope_base` (10000), `retnet_norm_eps` (1e-5).
    """

    def __init__(self, embed_dim, block_loc, kwarg_all, device=None, dtype=None, retnet_heads: int = 4,
                 retnet_expand_k: float = 1.0, retnet_expand_v: float = 2.0, retnet_chunk_size: int = 64,
                 retnet_rope_base: float = 10000.0, retnet_norm_eps: float = 1e-5, **kwargs):
        self.factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__(embed_dim, block_loc, kwarg_all)
        key_dim, value_dim = int(embed_dim * retnet_expand_k), int(embed_dim * retnet_expand_v)
        if key_dim % retnet_heads or value_dim % retnet_heads or (key_dim // retnet_heads) % 2:
            raise ValueError(f"MultiScaleRetention: retnet_heads {retnet_heads} must split the key dim {key_dim} "
                             f"into even head dims and divide the value dim {value_dim}")
        self.n_heads, self.key_dim, self.value_dim = retnet_heads, key_dim, value_dim
        self.chunk_size, self.rope_base = retnet_chunk_size, retnet_rope_base
        self.q_proj = nn.Linear(embed_dim, key_dim, bias=False, **self.factory_kwargs)
        self.k_proj = nn.Linear(embed_dim, key_dim, bias=False, **self.factory_kwargs)
        self.v_proj = nn.Linear(embed_dim, value_dim, bias=False, **self.factory_kwargs)
        self.g_proj = nn.Linear(embed_dim, value_dim, bias=False, **self.factory_kwargs)
        self.group_norm = nn.GroupNorm(retnet_heads, value_dim, eps=retnet_norm_eps, **self.factory_kwargs)
        self.o_proj = nn.Linear(value_dim, embed_dim, bias=False, **self.factory_kwargs)
        self.register_buffer("log_gamma", torch.empty(retnet_heads, device=device, dtype=torch.float32),
                             persistent=False)
        self._init_weights()

    def _init_weights(self):
        """The fixed multi-scale decays: log(1 - 2^(-5 - h)) for head h."""
        if self.log_gamma.is_meta:
            return
        h = torch.arange(self.n_heads, dtype=torch.float64)
        self.log_gamma.copy_(torch.log1p(-(2.0 ** (-5.0 - h))))

    def _forward(self, X, **Z):
        B, T, _ = X.shape
        H = self.n_heads
        q = retention_rotary(self.q_proj(X).view(B, T, H, -1).transpose(1, 2), self.rope_base)
        k = retention_rotary(self.k_proj(X).view(B, T, H, -1).transpose(1, 2), self.rope_base)
        v = self.v_proj(X).view(B, T, H, -1).transpose(1, 2)
        o, _ = retention_chunked(q * q.shape[-1] ** -0.5, k, v, self.log_gamma, self.chunk_size)
        o = self.group_norm(o.transpose(1, 2).reshape(B * T, self.value_dim)).view(B, T, self.value_dim)
        return self.o_proj(F.silu(self.g_proj(X)) * o)


@gau_test
def test_retention_chunked_matches_recurrent(device=None, dtype=None):
    torch.manual_seed(0)
    q, k = (torch.randn(2, 3, 37, 4, device=device, dtype=torch.float64) for _ in range(2))
    v = torch.randn(2, 3, 37, 6, device=device, dtype=torch.float64)
    log_gamma = torch.log1p(-(2.0 ** (-5.0 - torch.arange(3.0, device=device, dtype=torch.float64))))
    o, S = retention_chunked(q, k, v, log_gamma, chunk_size=16)
    o_ref, S_ref = retention_recurrent(q, k, v, log_gamma)
    assert torch.allclose(o, o_ref, atol=1e-10) and torch.allclose(S, S_ref, atol=1e-10)


@gau_test
def test_retention_is_causal(device=None, dtype=None):
    unit = MultiScaleRetention(32, (0, 1), {}, device=device, dtype=dtype)
    assert unit.log_gamma.exp().tolist() == sorted(unit.log_gamma.exp().tolist())  # slower decay per head
    X = torch.randn(2, 20, 32, device=device, dtype=dtype)
    X2 = X.clone()
    X2[:, 11:] = torch.randn_like(X2[:, 11:])
    Y, _ = unit(X)
    Y2, _ = unit(X2)
    assert torch.allclose(Y[:, :11], Y2[:, :11], atol=1e-5) and not torch.allclose(Y[:, 11:], Y2[:, 11:])
