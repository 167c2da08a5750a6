import torch
from torch import nn
from torch.nn import functional as F

from designs.gau import GAUBase, gau_test


def gla_recurrent(q, k, v, log_g, state=None):
    """Gated linear attention, one token at a time: the reference form (and the decoding form).

    S_t = diag(exp(log_g_t)) S_{t-1} + k_t^T v_t;  o_t = q_t S_t.
    The gate decays the state one key channel at a time; token t's own k_t^T v_t is not decayed.

    q, k: [B, H, T, K]; v: [B, H, T, V]; log_g: [B, H, T, K] (log forget gate, <= 0);
    state: [B, H, K, V] or None (zeros). Returns (o: [B, H, T, V] in q's dtype,
    final state: [B, H, K, V] in fp32, or fp64 for fp64 inputs). Computes in fp32 (or fp64).
    """
    B, H, T, K = q.shape
    dtype, f = q.dtype, torch.promote_types(q.dtype, torch.float32)
    q, k, v, gate = q.to(f), k.to(f), v.to(f), log_g.to(f).exp()
    S = q.new_zeros(B, H, K, v.shape[-1]) if state is None else state.to(f)
    outputs = []
    for t in range(T):
        S = gate[:, :, t, :, None] * S + k[:, :, t, :, None] * v[:, :, t, None, :]
        outputs.append((q[:, :, t, :, None] * S).sum(-2))
    o = torch.stack(outputs, dim=2) if outputs else v[:, :, :0]
    return o.to(dtype), S


def gla_chunked(q, k, v, log_g, chunk_size=64, state=None, subchunk_size=8):
    """Gated linear attention in chunks: the training form (two-level chunking, GLA paper Sec. 4).

    The same function as gla_recurrent. The sequence is cut into chunks of `chunk_size`;
    b_i = sum of log_g over the chunk up to and including i (b <= 0, decreasing), b_C its last value.
    - inter-chunk: a loop over chunks carries the state,
        o_i += (q_i * exp(b_i)) S_prev;  S = exp(b_C) * S_prev + (k * exp(b_C - b))^T v;
    - intra-chunk: o_i += sum_{j<=i} A_ij v_j with A_ij = sum_k q_ik k_jk exp(b_ik - b_jk), built
      on sub-chunks of `subchunk_size`: for sub-chunk J before sub-chunk I as the matmul of
      q_I * exp(b_I - r_I) * exp(r_I - e_J) with k_J * exp(e_J - b_J) (r_I: b just before
      sub-chunk I, e_J: b at the end of J); inside a sub-chunk exactly, in log space, on a
      [c, c, K] tensor.
    Every exponent is <= 0, so nothing overflows however small the gates get.
    Cost: O(T (C K + C V + K V + c K)) time per head; chunk and sub-chunk sizes change speed only.

    q, k: [B, H, T, K]; v: [B, H, T, V]; log_g: [B, H, T, K] (<= 0); state: [B, H, K, V] or None.
    chunk_size must be a multiple of subchunk_size; any T works (padded inside, sliced after).
    Returns (o: [B, H, T, V] in q's dtype, final state: [B, H, K, V] in fp32 or fp64).
    """
    B, H, T, K = q.shape
    V = v.shape[-1]
    dtype, f = q.dtype, torch.promote_types(q.dtype, torch.float32)
    c = min(subchunk_size, chunk_size)
    if chunk_size % c:
        raise ValueError(f"gla_chunked: chunk_size {chunk_size} must be a multiple of subchunk_size {c}")
    S = q.new_zeros(B, H, K, V, dtype=f) if state is None else state.to(f)
    if T == 0:
        return v[:, :, :0], S
    C = min(chunk_size, -(-T // c) * c)  # a short sequence makes one short chunk
    pad = (-T) % C
    q, k, v, g = (F.pad(x.to(f), (0, 0, 0, pad)) for x in (q, k, v, log_g))  # padded gates: log 1 = 0
    N, n_sub = (T + pad) // C, C // c
    q, k, g = (x.view(B, H, N, C, K) for x in (q, k, g))
    v = v.view(B, H, N, C, V)
    b = g.cumsum(-2)

    # inter-chunk: the state before each chunk, by a recurrence over chunks
    b_end = b[:, :, :, -1:]  # [B, H, N, 1, K]
    U = (k * (b_end - b).exp()).transpose(-1, -2) @ v  # [B, H, N, K, V]
    chunk_decay = b_end.transpose(-1, -2).exp()  # [B, H, N, K, 1]
    before = []
    for n in range(N):
        before.append(S)
        S = chunk_decay[:, :, n] * S + U[:, :, n]
    o = (q * b.exp()) @ torch.stack(before, dim=2)  # [B, H, N, C, V]

    # intra-chunk scores inside each sub-chunk: exact, in log space
    qs, ks, bs = (x.view(B, H, N, n_sub, c, K) for x in (q, k, b))
    causal = torch.ones(c, c, dtype=torch.bool, device=q.device).tril()
    log_decay = (bs.unsqueeze(-2) - bs.unsqueeze(-3)).masked_fill(~causal[:, :, None], float("-inf"))
    A = (qs.unsqueeze(-2) * ks.unsqueeze(-3) * log_decay.exp()).sum(-1)  # [B, H, N, I, c, c]
    if n_sub > 1:  # scores of sub-chunk I on an earlier sub-chunk J: one matmul per J
        e = bs[..., -1, :]  # [B, H, N, n_sub, K]: b at the end of each sub-chunk
        r = torch.cat((torch.zeros_like(e[..., :1, :]), e[..., :-1, :]), dim=-2)  # b just before each
        q_r = qs * (bs - r.unsqueeze(-2)).exp()
        k_e = ks * (e.unsqueeze(-2) - bs).exp()
        later = torch.ones(n_sub, n_sub, dtype=torch.bool, device=q.device).triu(1)  # [J, I]: I after J
        between = (r.unsqueeze(-3) - e.unsqueeze(-2)).masked_fill(~later[:, :, None], float("-inf")).exp()
        rows = (q_r.unsqueeze(-4) * between.unsqueeze(-2)).flatten(-3, -2)  # [B, H, N, J, I c, K]
        A_off = (rows @ k_e.transpose(-1, -2)).view(B, H, N, n_sub, n_sub, c, c)  # [.., J, I, i, j]
        eye = torch.eye(n_sub, dtype=A.dtype, device=q.device)[:, None, :, None]
        A = A_off.permute(0, 1, 2, 4, 5, 3, 6) + A.unsqueeze(-2) * eye  # [.., I, i, J, j]
    o = o + A.reshape(B, H, N, C, C) @ v
    return o.reshape(B, H, N * C, V)[:, :, :T].to(dtype), S


class GatedLinearAttention(GAUBase):
    """Gated linear attention (GLA, Yang et al. 2023): linear attention with a data-dependent forget gate.

    Per head, a matrix state S (K x V) is decayed one key channel at a time by a gate computed
    from the token, then written with k^T v and read with q:
        alpha_t = sigmoid(x_t W_a1 W_a2 + b_a)^(1/tau)  (low-rank W_a1: d x r, W_a2: r x key_dim)
        S_t = diag(alpha_t) S_{t-1} + k_t^T v_t;   o_t = q_t S_t / sqrt(K)
        y_t = (swish(x_t W_r) * RMSNorm_head(o_t)) W_O
    log alpha = logsigmoid(.) / tau is computed in log space. q, k: key_dim = gla_expand_k * d,
    v, the output gate r: value_dim = gla_expand_v * d, both split over gla_heads heads. No feature
    map and no positional encoding: position comes from the decay. Trained with gla_chunked
    (chunks of gla_chunk_size, sub-chunks of 8); decoding uses gla_recurrent with a K x V state.
    RMSNorm_head normalizes each head's V channels (one weight vector shared by the heads).
    Cost: O(T (C K + C V + K V)) time per head, a constant-size state when decoding;
    about 4 d^2 parameters (q, k: d^2 together at expand_k 0.5; v, r, o: d^2 each).
    Hyperparameters: `gla_heads` (4), `gla_expand_k` (0.5), `gla_expand_v` (1.0),
    `gla_gate_low_rank` (r, 16), `gla_gate_normalizer` (tau, 16), `gla_chunk_size` (64),
    `gla_norm_eps` (1e-5).
    """

    def __init__(self, embed_dim, block_loc, kwarg_all, device=None, dtype=None, gla_heads: int = 4,
                 gla_expand_k: float = 0.5, gla_expand_v: float = 1.0, gla_gate_low_rank: int = 16,
                 gla_gate_normalizer: float = 16.0, gla_chunk_size: int = 64, gla_norm_eps: float = 1e-5,
                 **kwargs):
        self.factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__(embed_dim, block_loc, kwarg_all)
        key_dim, value_dim = int(embed_dim * gla_expand_k), int(embed_dim * gla_expand_v)
        if key_dim % gla_heads or value_dim % gla_heads:
            raise ValueError(f"GatedLinearAttention: gla_heads {gla_heads} must divide the key dim {key_dim} "
                             f"and the value dim {value_dim} (embed_dim {embed_dim})")
        self.n_heads, self.key_dim, self.value_dim = gla_heads, key_dim, value_dim
        self.gate_normalizer, self.chunk_size = gla_gate_normalizer, gla_chunk_size
        self.q_proj = nn.Linear(embed_dim, key_dim, bias=False, **self.factory_kwargs)
        self.k_proj = nn.Linear(embed_dim, key_dim, bias=False, **self.factory_kwargs)
        self.v_proj = nn.Linear(embed_dim, value_dim, bias=False, **self.factory_kwargs)
        self.gate_down = nn.Linear(embed_dim, gla_gate_low_rank, bias=False, **self.factory_kwargs)
        self.gate_up = nn.Linear(gla_gate_low_rank, key_dim, bias=True, **self.factory_kwargs)
        self.r_proj = nn.Linear(embed_dim, value_dim, bias=False, **self.factory_kwargs)
        self.head_norm = nn.RMSNorm(value_dim // gla_heads, eps=gla_norm_eps, **self.factory_kwargs)
        self.o_proj = nn.Linear(value_dim, embed_dim, bias=False, **self.factory_kwargs)

    def _forward(self, X, **Z):
        B, T, _ = X.shape
        H = self.n_heads
        q = self.q_proj(X).view(B, T, H, -1).transpose(1, 2)
        k = self.k_proj(X).view(B, T, H, -1).transpose(1, 2)
        v = self.v_proj(X).view(B, T, H, -1).transpose(1, 2)
        log_g = F.logsigmoid(self.gate_up(self.gate_down(X)).float()) / self.gate_normalizer
        log_g = log_g.view(B, T, H, -1).transpose(1, 2)
        o, _ = gla_chunked(q * q.shape[-1] ** -0.5, k, v, log_g, self.chunk_size)
        o = self.head_norm(o.transpose(1, 2)).reshape(B, T, self.value_dim)
        return self.o_proj(F.silu(self.r_proj(X)) * o)


@gau_test
def test_gla_chunked_matches_recurrent(device=None, dtype=None):
    torch.manual_seed(0)
    q, k, log_g = (torch.randn(2, 2, 37, 4, device=device, dtype=torch.float64) for _ in range(3))
    v = torch.randn(2, 2, 37, 6, device=device, dtype=torch.float64)
    log_g = F.logsigmoid(log_g) / 4
    o, S = gla_chunked(q, k, v, log_g, chunk_size=16, subchunk_size=4)
    o_ref, S_ref = gla_recurrent(q, k, v, log_g)
    assert torch.allclose(o, o_ref, atol=1e-10) and torch.allclose(S, S_ref, atol=1e-10)


@gau_test
def test_gla_is_causal(device=None, dtype=None):
    unit = GatedLinearAttention(32, (0, 1), {}, device=device, dtype=dtype)
    X = torch.randn(2, 20, 32, device=device, dtype=dtype)
    X2 = X.clone()
    X2[:, 11:] = torch.randn_like(X2[:, 11:])
    Y, _ = unit(X)
    Y2, _ = unit(X2)
    assert torch.allclose(Y[:, :11], Y2[:, :11], atol=1e-5) and not torch.allclose(Y[:, 11:], Y2[:, 11:])
