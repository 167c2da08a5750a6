import math

import torch
from torch import nn
from torch.nn import functional as F

from designs.gau import GAUBase, gau_test


def rwkv6_chunked(r, k, v, log_w, u, chunk_size: int = 8, state=None):
    """WKV-6 in chunkwise-parallel form: the training path of RWKV-6 (Finch).

    r, k, log_w: [B, H, T, K]; v: [B, H, T, V]; u: [H, K]; state: [B, H, K, V] or None (zeros).
    Returns (o: [B, H, T, V] in v's dtype, final state: [B, H, K, V] in fp32, fp64 for fp64 inputs).
    The same function as `rwkv6_recurrent`:

        o_t = r_t (S_{t-1} + diag(u) k_t^T v_t),    S_t = diag(w_t) S_{t-1} + k_t^T v_t,    w_t = exp(log_w_t)

    log_w <= 0 is the per-channel log decay (RWKV-6: log_w = -exp(d_t)). The sequence is cut
    into chunks of `chunk_size` tokens (padded at the end, sliced after). Within a chunk, with
    b_i the cumulative log decay up to token i (inclusive), token i reads token j < i through
    sum_c r_ic k_jc exp(b_{i-1,c} - b_jc): the exponents are differences, never above zero, so
    any decay strength is exact in fp32 (no exp(-b) that could overflow). The pairwise tensor
    costs chunk_size * K per token per head. Across chunks the state carries the past: the
    reads r_i exp(b_{i-1}) S and the writes k_j exp(b_last - b_j) are both scaled by factors
    in (0, 1]. Only the state update S <- diag(exp(b_last)) S + U loops over chunks (T / chunk_size
    small steps); everything else is batched. Computes in fp32 (fp64 stays fp64).
    """
    B, H, T, K = r.shape
    V = v.shape[-1]
    out_dtype, dtype = v.dtype, torch.promote_types(v.dtype, torch.float32)
    r, k, v, log_w = (x.to(dtype) for x in (r, k, v, log_w))
    S = r.new_zeros(B, H, K, V) if state is None else state.to(dtype)
    if T == 0:
        return v.to(out_dtype), S
    C = chunk_size
    pad = -T % C
    if pad:  # padded tokens: k = v = 0 write nothing, log_w = 0 keeps the state
        r, k, v, log_w = (F.pad(x, (0, 0, 0, pad)) for x in (r, k, v, log_w))
    N = (T + pad) // C
    r, k, v, log_w = (x.reshape(B, H, N, C, x.shape[-1]) for x in (r, k, v, log_w))
    b = log_w.cumsum(dim=-2)  # b_i: decay from the chunk start through token i
    b_read = b - log_w  # b_{i-1}: decay from the chunk start through token i - 1
    b_last = b[..., -1:, :]  # decay through the whole chunk
    # Intra-chunk: A_ij = sum_c r_ic k_jc exp(b_{i-1,c} - b_jc) for j < i; u on the diagonal.
    strictly_lower = torch.ones(C, C, dtype=torch.bool, device=r.device).tril(-1)
    gap = b_read.unsqueeze(-2) - b.unsqueeze(-3)  # [B, H, N, C, C, K]: the biggest tensor, so in place
    pair_decay = gap.masked_fill_(~strictly_lower[:, :, None], -math.inf).exp_()
    A = (r.unsqueeze(-2) * k.unsqueeze(-3) * pair_decay).sum(-1)
    bonus = (r * u.to(dtype)[None, :, None, None, :] * k).sum(-1)
    o = (A + torch.diag_embed(bonus)) @ v
    # Inter-chunk: the state entering each chunk.
    U = (k * (b_last - b).exp()).transpose(-1, -2) @ v  # [B, H, N, K, V]: what chunk n writes
    decay = b_last.squeeze(-2).exp().unsqueeze(-1)  # [B, H, N, K, 1]
    entering = []
    for decay_n, U_n in zip(decay.unbind(2), U.unbind(2)):  # unbind: one backward op, not N
        entering.append(S)
        S = torch.addcmul(U_n, decay_n, S)  # decay_n * S + U_n, in one op
    o = o + (r * b_read.exp()) @ torch.stack(entering, dim=2)
    o = o.reshape(B, H, N * C, V)[:, :, :T]
    return o.to(out_dtype), S


def rwkv6_recurrent(r, k, v, log_w, u, state=None):
    """WKV-6 step by step: the reference (and decoding) form of `rwkv6_chunked`.

    r, k, log_w: [B, H, T, K]; v: [B, H, T, V]; u: [H, K]; state: [B, H, K, V] or None (zeros).
    For t = 1..T:  o_t = r_t (S_{t-1} + diag(u) k_t^T v_t);  S_t = diag(exp(log_w_t)) S_{t-1} + k_t^T v_t.
    Returns (o: [B, H, T, V] in v's dtype, S_T: [B, H, K, V] in fp32, fp64 for fp64 inputs). One
    Python step per token, O(K V) each: for tests and token-by-token decoding.
    """
    B, H, T, K = r.shape
    out_dtype, dtype = v.dtype, torch.promote_types(v.dtype, torch.float32)
    r, k, v, log_w = (x.to(dtype) for x in (r, k, v, log_w))
    u = u.to(dtype)[None, :, :, None]
    S = r.new_zeros(B, H, K, v.shape[-1]) if state is None else state.to(dtype)
    outputs = []
    for t in range(T):
        kv = k[:, :, t, :, None] * v[:, :, t, None, :]
        outputs.append((r[:, :, t, None, :] @ (S + u * kv)).squeeze(-2))
        S = log_w[:, :, t, :, None].exp() * S + kv
    o = torch.stack(outputs, dim=2) if outputs else v
    return o.to(out_dtype), S


class RWKV6TimeMix(GAUBase):
    """RWKV-6 (Finch) time mixing: data-dependent token shift and decay, matrix-valued state per head.

    X: (batch, seq, D), already normalized by the block. Let x_{t-1} be the previous token
    (zeros before the first) and dx_t = x_{t-1} - x_t. Data-dependent linear interpolation
    (ddlerp), with one low-rank map A (D x 5R, tanh) shared by the five targets and one
    B_* (R x D) each:
        m_* = mu_* + tanh((x_t + dx_t * mu_x) A)_* B_*          for * in w, k, v, r, g
        x*_t = x_t + dx_t * m_*
    Projections: r = xr W_r, k = xk W_k, v = xv W_v, g = SiLU(xg W_g) (D x D each, no bias).
    Decay (per channel, per token): d_t = lambda_d + tanh(xw A_d) B_d (rank `rwkv6_decay_rank`),
        w_t = exp(-exp(d_t)) in (0, 1), passed as log_w = -exp(d_t).
    WKV per head h (head size K = D / rwkv6_n_heads, state S: K x K), with bonus u (`time_first`):
        o_t = r_t (S_{t-1} + diag(u) k_t^T v_t),   S_t = diag(w_t) S_{t-1} + k_t^T v_t
    (`rwkv6_chunked` in training; `rwkv6_recurrent` is the step form). Output:
        Y = (GroupNorm_per_head(o) * g) W_o.
    Cost per token: 5 D^2 (projections) + D (10 R + 2 R_d) (low-rank maps) + D K (state)
    + D * chunk_size (exact in-chunk decays); state per sequence: D K numbers + the last token.

    Decoding: a step needs the WKV state S (batch, heads, K, K) and the previous token x_{t-1}
    (batch, D) of this unit's input; run `rwkv6_recurrent` on the new token with S, use x_{t-1}
    as the shift, then keep S_t and x_t. (Training runs whole sequences: x_{-1} = 0, S_0 = 0.)

    Hyperparameters: `rwkv6_n_heads` (heads; the paper uses head size 64), `rwkv6_mix_rank`
    (R = 32 in the paper), `rwkv6_decay_rank` (R_d = 64), `rwkv6_chunk_size` (tokens per chunk
    of the training form; a speed knob, results equal), `rwkv6_gn_eps` (group norm eps,
    1e-5 * 8^2 as in the paper's code). Init (`_init_weights`, from the paper's code): mu ramps
    over channels and depth, lambda_d = -6 + 5 (n / (D-1))^(0.7 + 1.3 l / (L-1)), u a ramp plus
    a zigzag, A = A_d = 0, B, B_d ~ U(-0.01, 0.01), group norm scale ((l+1)/L)^0.7.
    """

    def __init__(self, embed_dim, block_loc, kwarg_all, device=None, dtype=None, rwkv6_n_heads: int = 4,
                 rwkv6_mix_rank: int = 32, rwkv6_decay_rank: int = 64, rwkv6_chunk_size: int = 8,
                 rwkv6_gn_eps: float = 64e-5, **kwargs):
        self.factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__(embed_dim, block_loc, kwarg_all)
        D, H = embed_dim, rwkv6_n_heads
        if D % H:
            raise ValueError(f"RWKV6TimeMix: embed_dim {D} is not divisible by rwkv6_n_heads {H}")
        self.n_heads, self.head_size, self.chunk_size = H, D // H, rwkv6_chunk_size
        self.mix_rank = rwkv6_mix_rank
        fk = self.factory_kwargs
        self.mix_x = nn.Parameter(torch.empty(D, **fk))  # mu_x
        self.mix = nn.Parameter(torch.empty(5, D, **fk))  # mu_w, mu_k, mu_v, mu_r, mu_g
        self.mix_lora_a = nn.Parameter(torch.empty(D, 5 * rwkv6_mix_rank, **fk))
        self.mix_lora_b = nn.Parameter(torch.empty(5, rwkv6_mix_rank, D, **fk))
        self.decay = nn.Parameter(torch.empty(D, **fk))  # lambda_d
        self.decay_lora_a = nn.Parameter(torch.empty(D, rwkv6_decay_rank, **fk))
        self.decay_lora_b = nn.Parameter(torch.empty(rwkv6_decay_rank, D, **fk))
        self.bonus = nn.Parameter(torch.empty(H, D // H, **fk))  # u
        self.receptance = nn.Linear(D, D, bias=False, **fk)
        self.key = nn.Linear(D, D, bias=False, **fk)
        self.value = nn.Linear(D, D, bias=False, **fk)
        self.gate = nn.Linear(D, D, bias=False, **fk)
        self.out_proj = nn.Linear(D, D, bias=False, **fk)
        self.group_norm = nn.GroupNorm(H, D, eps=rwkv6_gn_eps, **fk)
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self):
        layer, n_layer = self.block_loc
        depth = layer / max(n_layer - 1, 1)  # 0 at the first block, 1 at the last
        shallow = 1.0 - layer / n_layer  # 1 at the first block, towards 0 at the last
        D = self.embed_dim
        n = torch.arange(D, dtype=torch.float32, device=self.decay.device)
        ramp = n / D
        mu = 1.0 - ramp ** shallow
        mu_r = 1.0 - ramp ** (0.5 * shallow)
        self.mix_x.copy_(mu)
        self.mix.copy_(torch.stack([mu, mu, 1.0 - (ramp ** shallow + 0.3 * depth), mu_r, mu_r]))
        self.mix_lora_a.zero_()
        self.mix_lora_b.uniform_(-0.01, 0.01)
        self.decay.copy_(-6.0 + 5.0 * (n / max(D - 1, 1)) ** (0.7 + 1.3 * depth))
        self.decay_lora_a.zero_()
        self.decay_lora_b.uniform_(-0.01, 0.01)
        zigzag = ((n + 1) % 3 - 1) * 0.1
        self.bonus.copy_((depth * (1.0 - n / max(D - 1, 1)) + zigzag).view_as(self.bonus))
        self.group_norm.weight.fill_(((1 + layer) / n_layer) ** 0.7)
        self.group_norm.bias.zero_()

    def projections(self, X):
        """r, k, v, g: (B, T, D) and log_w = -exp(d): (B, T, D), from the token-shifted input."""
        B, T, D = X.shape
        dx = F.pad(X[:, :-1], (0, 0, 1, 0)) - X  # x_{t-1} - x_t, with x_{-1} = 0
        lora = torch.tanh((X + dx * self.mix_x) @ self.mix_lora_a).view(B, T, 5, self.mix_rank)
        m = self.mix + torch.einsum("btir,ird->btid", lora, self.mix_lora_b)  # (B, T, 5, D)
        xw, xk, xv, xr, xg = (X + dx * m_i for m_i in m.unbind(2))
        d = self.decay + torch.tanh(xw @ self.decay_lora_a) @ self.decay_lora_b
        log_w = -torch.exp(d.float())
        return self.receptance(xr), self.key(xk), self.value(xv), F.silu(self.gate(xg)), log_w

    def _forward(self, X, **Z):
        B, T, D = X.shape
        r, k, v, g, log_w = self.projections(X)
        r, k, v, log_w = (x.view(B, T, self.n_heads, self.head_size).transpose(1, 2) for x in (r, k, v, log_w))
        o, _ = rwkv6_chunked(r, k, v, log_w, self.bonus, self.chunk_size)
        o = self.group_norm(o.transpose(1, 2).reshape(B * T, D)).view(B, T, D)
        return self.out_proj(o * g)


@gau_test
def test_rwkv6_time_mix_is_causal_and_decays(device=None, dtype=None):
    unit = RWKV6TimeMix(32, (1, 3), {}, device=device, dtype=dtype)
    X = torch.randn(2, 13, 32, device=device, dtype=dtype)
    X2 = X.clone()
    X2[:, 9:] = torch.randn_like(X2[:, 9:])
    Y, _ = unit(X)
    Y2, _ = unit(X2)
    assert torch.allclose(Y[:, :9], Y2[:, :9], atol=1e-5) and not torch.allclose(Y[:, 9:], Y2[:, 9:])
    w = unit.projections(X)[-1].exp()
    assert (w > 0).all() and (w < 1).all()
