import math

import torch
from torch import nn
from torch.nn import functional as F

from designs.gau import GAUBase, gau_test


def ssd_segsum(a):
    """Segment sums of log-decays within a chunk: out[..., i, j] = a[..., j+1] + ... + a[..., i].

    a: [..., Q] (fp32 log-decays, <= 0) -> [..., Q, Q]; -inf above the diagonal (j > i),
    0 on it, so exp(out) is the lower-triangular decay mask L of the SSD paper.
    """
    Q = a.shape[-1]
    cs = a.cumsum(-1)
    seg = cs[..., :, None] - cs[..., None, :]
    causal = torch.ones(Q, Q, dtype=torch.bool, device=a.device).tril()
    return seg.masked_fill(~causal, float("-inf"))


def ssd_chunked(x, dt, A, B, C, chunk_size=64, state=None):
    """State space duality (SSD), the chunked algorithm of Mamba-2 (Dao and Gu, 2024).

    The scalar-decay SSM  h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T,  y_t = h_t C_t,
    computed in chunks of `chunk_size` tokens: inside a chunk as a masked quadratic
    (attention-like) form  Y = (L o C B^T) (dt x)  with L[i, j] = exp(sum_{j<k<=i} dt_k A);
    across chunks by passing the chunk-final states through a 1-semiseparable (scalar
    decay) recurrence written as one matrix product. Cost O(T Q (N + P) + T N P) per head.

    x:     [B, T, H, P]   inputs per head (head dim P)
    dt:    [B, T, H]      step sizes, positive (after softplus)
    A:     [H]            scalar decay rate per head, negative
    B, C:  [B, T, G, N]   input / output projections, G groups shared by H // G heads each
           (or [B, T, N] for one group)
    state: [B, H, P, N]   initial state, optional (zeros)
    Returns y: [B, T, H, P] (x's dtype) and the final state [B, H, P, N] (fp32 or wider).
    Cumulative sums of log-decays and all products run in fp32 (or fp64 for fp64 inputs).
    T need not be a multiple of chunk_size: the tail is padded with dt = 0 (no decay, no input).
    """
    if B.dim() == 3:
        B, C = B.unsqueeze(2), C.unsqueeze(2)
    b, T, H, P = x.shape
    G, N = B.shape[2], B.shape[3]
    R, Q = H // G, chunk_size
    out_dtype = x.dtype
    work = torch.promote_types(x.dtype, torch.float32)
    x, dt, A, B, C = (t.to(work) for t in (x, dt, A, B, C))
    pad = (-T) % Q
    if pad:
        x, B, C = (F.pad(t, (0, 0, 0, 0, 0, pad)) for t in (x, B, C))
        dt = F.pad(dt, (0, 0, 0, pad))
    c = (T + pad) // Q
    # Chunked, heads grouped by their B/C group: [b, G, R, c, Q, ...]
    xdt = (x * dt[..., None]).view(b, c, Q, G, R, P).permute(0, 3, 4, 1, 2, 5).contiguous()
    a = (dt * A).view(b, c, Q, G, R).permute(0, 3, 4, 1, 2)
    Bc = B.view(b, c, Q, G, N).permute(0, 3, 1, 2, 4).unsqueeze(2)  # [b, G, 1, c, Q, N]
    Cc = C.view(b, c, Q, G, N).permute(0, 3, 1, 2, 4).unsqueeze(2)
    cs = a.cumsum(-1)  # [b, G, R, c, Q]
    # 1. within chunks, the quadratic (dual) form: (L o C B^T) (dt x)
    scores = (Cc @ Bc.transpose(-1, -2)) * torch.exp(ssd_segsum(a))  # [b, G, R, c, Q, Q]
    # 2. the state each chunk leaves at its end: sum_s (dt x)_s^T exp(cs_last - cs_s) B_s
    states = xdt.transpose(-1, -2) @ (Bc * torch.exp(cs[..., -1:] - cs)[..., None])  # [b, G, R, c, P, N]
    # 3. states across chunks: entering[z] = sum_{i<=z} exp(decay of chunks i..z-1) S[i], where S[0] = h0
    #    and S[i] is what chunk i-1 leaves (a scalar-decay recurrence as one matrix product)
    h0 = torch.zeros(b, G, R, 1, P, N, dtype=work, device=x.device) if state is None \
        else state.to(work).reshape(b, G, R, 1, P, N)
    states = torch.cat([h0, states], dim=3)  # [b, G, R, c + 1, P, N]
    chunk_decay = torch.exp(ssd_segsum(F.pad(cs[..., -1], (1, 0))))  # [b, G, R, c + 1, c + 1]
    states = (chunk_decay @ states.flatten(-2)).view(b, G, R, c + 1, P, N)
    # 4. plus what the entering state gives each position: exp(cs_l) C_l h^T
    y = scores @ xdt + (Cc * torch.exp(cs)[..., None]) @ states[:, :, :, :-1].transpose(-1, -2)
    y = y.permute(0, 3, 4, 1, 2, 5).reshape(b, c * Q, H, P)[:, :T]
    return y.to(out_dtype), states[:, :, :, -1].reshape(b, H, P, N)


def ssd_recurrent(x, dt, A, B, C, state=None):
    """The SSD recurrence token by token (reference form of ssd_chunked, same shapes).

    h_t = exp(dt_t A) h_{t-1} + (dt_t x_t) B_t^T;  y_t = h_t C_t, per head, with
    h: [B, H, P, N]. Returns y: [B, T, H, P] and the final state [B, H, P, N].
    """
    if B.dim() == 3:
        B, C = B.unsqueeze(2), C.unsqueeze(2)
    b, T, H, P = x.shape
    G, N = B.shape[2], B.shape[3]
    out_dtype = x.dtype
    work = torch.promote_types(x.dtype, torch.float32)
    x, dt, A, B, C = (t.to(work) for t in (x, dt, A, B, C))
    B, C = B.repeat_interleave(H // G, dim=2), C.repeat_interleave(H // G, dim=2)  # [b, T, H, N]
    h = torch.zeros(b, H, P, N, dtype=work, device=x.device) if state is None else state.to(work)
    ys = []
    for t in range(T):
        decay = torch.exp(dt[:, t] * A)[..., None, None]
        h = h * decay + (dt[:, t, :, None] * x[:, t])[..., None] * B[:, t, :, None, :]
        ys.append((h @ C[:, t, :, :, None]).squeeze(-1))
    y = torch.stack(ys, dim=1) if ys else x.new_zeros(b, 0, H, P)
    return y.to(out_dtype), h


class Mamba2Mixer(GAUBase):
    """The Mamba-2 mixer (Dao and Gu, 2024): a selective SSM with scalar decay per head (SSD).

    in_proj(X) -> z, x, B, C, dt (z, x: d_inner = expand * embed_dim; B, C: G groups of
    N; dt: one per head). xBC = SiLU(causal depthwise conv_k(x, B, C)) (width k = 4).
    Heads: x splits into H heads of P = d_inner / H. Per head, with
    A = -exp(A_log) (scalar) and dt = softplus(dt_raw + dt_bias):
        h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T   (h: P x N),   y_t = h_t C_t + D x_t
    computed by `ssd_chunked` (training) or `ssd_recurrent` (reference / decoding).
    Y = out_proj(RMSNorm(y * SiLU(z)))  (gated RMSNorm per group, gate before the norm).
    Init (paper / reference code): A uniform in [1, 16], dt_bias = softplus^-1(dt) with dt
    log-uniform in [dt_min, dt_max] = [0.001, 0.1] (floored at 1e-4), D = 1.
    Cost per token: ~2 embed_dim (2 d_inner + 2 G N + H) + 2 d_inner embed_dim FLOPs of
    projections, O(Q (N + P) + N P) per head for SSD; state H P N per layer when decoding.
    Hyperparameters: `mamba2_n_heads` (H), `mamba2_expand`, `mamba2_state_size` (N),
    `mamba2_n_groups` (G), `mamba2_conv_size`, `mamba2_chunk_size` (Q), `mamba2_dt_min`,
    `mamba2_dt_max`, `mamba2_a_init_range`.
    Defaults at small scale: H = 4 heads (P = 64, the paper's head dim, at embed_dim 128);
    N = 32 (the reference code uses 128 at d_model >= 768; at widths 64-320, 32 keeps the
    B, C projections near 10% of the block while still larger than Mamba-1's 16, the paper's
    point being that SSD makes larger states cheap); Q = 64 (the reference uses 256 on GPU;
    on CPU the intra-chunk cost grows with Q and 64 measured fastest among 32-256).
    """

    def __init__(self, embed_dim, block_loc, kwarg_all, device=None, dtype=None, mamba2_n_heads: int = 4,
                 mamba2_expand: int = 2, mamba2_state_size: int = 32, mamba2_n_groups: int = 1,
                 mamba2_conv_size: int = 4, mamba2_chunk_size: int = 64, mamba2_dt_min: float = 0.001,
                 mamba2_dt_max: float = 0.1, mamba2_a_init_range=(1.0, 16.0), **kwargs):
        self.factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__(embed_dim, block_loc, kwarg_all)
        d_inner = mamba2_expand * embed_dim
        if d_inner % mamba2_n_heads or mamba2_n_heads % mamba2_n_groups:
            raise ValueError(f"Mamba2Mixer: d_inner {d_inner} must split into mamba2_n_heads {mamba2_n_heads} "
                             f"heads, in mamba2_n_groups {mamba2_n_groups} equal groups")
        self.d_inner, self.n_heads, self.n_groups = d_inner, mamba2_n_heads, mamba2_n_groups
        self.head_dim = d_inner // mamba2_n_heads
        self.state_size, self.chunk_size = mamba2_state_size, mamba2_chunk_size
        self.dt_range, self.a_init_range = (mamba2_dt_min, mamba2_dt_max), tuple(mamba2_a_init_range)
        bc_dim = 2 * mamba2_n_groups * mamba2_state_size
        self.in_proj = nn.Linear(embed_dim, 2 * d_inner + bc_dim + mamba2_n_heads, bias=False, **self.factory_kwargs)
        conv_dim = d_inner + bc_dim
        self.conv1d = nn.Conv1d(conv_dim, conv_dim, mamba2_conv_size, groups=conv_dim,
                                padding=mamba2_conv_size - 1, **self.factory_kwargs)
        self.A_log = nn.Parameter(torch.empty(mamba2_n_heads, **self.factory_kwargs))
        self.dt_bias = nn.Parameter(torch.empty(mamba2_n_heads, **self.factory_kwargs))
        self.D = nn.Parameter(torch.empty(mamba2_n_heads, **self.factory_kwargs))
        self.norm_weight = nn.Parameter(torch.empty(d_inner, **self.factory_kwargs))
        self.out_proj = nn.Linear(d_inner, embed_dim, bias=False, **self.factory_kwargs)
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self):
        lo, hi = self.a_init_range
        self.A_log.copy_(torch.empty_like(self.A_log, dtype=torch.float32).uniform_(lo, hi).log())
        log_lo, log_hi = math.log(self.dt_range[0]), math.log(self.dt_range[1])
        u = torch.rand_like(self.dt_bias, dtype=torch.float32)
        dt = torch.exp(u * (log_hi - log_lo) + log_lo).clamp(min=1e-4)
        self.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus^-1(dt)
        self.D.fill_(1.0)
        self.norm_weight.fill_(1.0)

    def _forward(self, X, **Z):
        b, T, _ = X.shape
        H, G, N, P = self.n_heads, self.n_groups, self.state_size, self.head_dim
        z, xBC, dt = self.in_proj(X).split((self.d_inner, self.d_inner + 2 * G * N, H), dim=-1)
        xBC = F.silu(self.conv1d(xBC.transpose(1, 2))[..., :T].transpose(1, 2))
        x, B, C = xBC.split((self.d_inner, G * N, G * N), dim=-1)
        x = x.reshape(b, T, H, P)
        dt = F.softplus(dt + self.dt_bias)
        A = -torch.exp(self.A_log.float())
        y, _ = ssd_chunked(x, dt, A, B.reshape(b, T, G, N), C.reshape(b, T, G, N), self.chunk_size)
        y = (y + self.D[:, None] * x).reshape(b, T, G, self.d_inner // G)
        gated = y * F.silu(z.reshape(b, T, G, self.d_inner // G))
        y = F.rms_norm(gated, (self.d_inner // G,), eps=1e-5).reshape(b, T, self.d_inner) * self.norm_weight
        return self.out_proj(y)


@gau_test
def test_mamba2_ssd_chunked_matches_recurrent(device=None, dtype=None):
    torch.manual_seed(0)
    b, T, H, P, G, N = 2, 19, 4, 8, 2, 6
    x = torch.randn(b, T, H, P, device=device, dtype=torch.float64)
    dt = F.softplus(torch.randn(b, T, H, device=device, dtype=torch.float64))
    A = -torch.rand(H, device=device, dtype=torch.float64) * 4
    B, C = (torch.randn(b, T, G, N, device=device, dtype=torch.float64) for _ in range(2))
    y1, h1 = ssd_chunked(x, dt, A, B, C, chunk_size=8)
    y2, h2 = ssd_recurrent(x, dt, A, B, C)
    assert torch.allclose(y1, y2, atol=1e-10) and torch.allclose(h1, h2, atol=1e-10)


@gau_test
def test_mamba2_mixer_shapes_and_init(device=None, dtype=None):
    unit = Mamba2Mixer(32, (0, 2), {}, device=device, dtype=dtype)
    dt = F.softplus(unit.dt_bias.float())
    assert dt.min() >= 0.9e-4 and dt.max() <= 0.11  # log-uniform in [0.001, 0.1], floored at 1e-4
    A = torch.exp(unit.A_log.float())
    assert A.min() >= 0.99 and A.max() <= 16.2  # uniform in [1, 16]
    Y, _ = unit(torch.randn(2, 70, 32, device=device, dtype=dtype))
    assert Y.shape == (2, 70, 32) and torch.isfinite(Y).all()
