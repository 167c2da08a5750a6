import torch
from torch import nn
from torch.nn import functional as F

from designs.gau import GAUBase, gau_test


def ttt_linear_inner_grad(z, target, ln_weight, ln_bias, eps: float = 1e-6):
    """Gradient, with respect to z, of the inner loss 0.5 * ||LN(z) * ln_weight + ln_bias - target||^2.

    z, target: [..., K] (one row per token); ln_weight, ln_bias broadcast against them. The
    layer norm's backward written out: with x = (z - mean) / std and h = (LN(z) - target) * ln_weight,
    dz = (h - mean(h) - x * mean(h * x)) / std. Returns [..., K].
    """
    var, mean = torch.var_mean(z, dim=-1, unbiased=False, keepdim=True)
    rstd = torch.rsqrt(var + eps)
    x = (z - mean) * rstd
    h = (x * ln_weight + ln_bias - target) * ln_weight
    return rstd * (h - h.mean(-1, keepdim=True) - x * (h * x).mean(-1, keepdim=True))


def ttt_linear_start(q, W0, b0, state):
    """The TTT state to start from: `state` in the working dtype, or (W0, b0) with nothing accumulated."""
    B, H, _, K = q.shape
    if state is not None:
        W, b, W_grad, b_grad, n = state
        return W.to(q.dtype), b.to(q.dtype), W_grad.to(q.dtype), b_grad.to(q.dtype), n
    W = W0.to(q.dtype).expand(B, H, K, K)
    b = b0.to(q.dtype).expand(B, H, K)
    return W, b, q.new_zeros(B, H, K, K), q.new_zeros(B, H, K), 0


def ttt_linear_recurrent(q, k, v, eta, W0, b0, ln_weight, ln_bias, mini_batch: int = 16, token_scale=None,
                         state=None, eps: float = 1e-6):
    """TTT-Linear, primal form, one token at a time: the reference (and decoding) form.

    q, k, v: [B, H, T, K]; eta: [B, H, T] (inner learning rate of each token); W0: [H, K, K],
    b0: [H, K] (the learned initial hidden state); ln_weight, ln_bias: [H, K] (inner layer norm);
    token_scale: [mini_batch] or None (ones); state: see below, or None to start from (W0, b0).

    The hidden state is a linear model per head, f(x) = x + LN(x W + b). Mini-batch gradient
    descent on the self-supervised loss l(W, b; k, v) = 0.5 ||LN(k W + b) + k - v||^2: within a
    mini-batch of `mini_batch` tokens every gradient is taken at the weights (W', b') the
    mini-batch started from, and token t (the i-th of its mini-batch, i = 0..mini_batch-1) uses
        G_t = sum over tokens s <= t of its mini-batch of eta_s * grad l(W', b'; k_s, v_s)
        W_t = W' - token_scale[i] * G_t^W,   b_t = b' - token_scale[i] * G_t^b
        o_t = q_t + LN(q_t W_t + b_t)
    and the mini-batch's last token's (W_t, b_t) starts the next mini-batch.
    token_scale = ones is the paper's Eq. (mini-batch GD, sum of gradients); the TTT unit passes
    1/(i+1) plus a learned offset, as the authors' code does (a running mean of the gradients).

    State: the tuple (W', b', G^W, G^b, n): W': [B, H, K, K] and b': [B, H, K] the weights at the
    start of the current mini-batch (after the last complete one), G^W: [B, H, K, K] and
    G^b: [B, H, K] the eta-weighted gradient sums of its n tokens seen so far (0 <= n < mini_batch;
    zeros when n = 0). Returns (o: [B, H, T, K] in q's dtype, final state). Computes in fp32
    (fp64 stays fp64). One Python step per token: O(T K^2), for tests and decoding.
    """
    B, H, T, K = q.shape
    out_dtype, dtype = q.dtype, torch.promote_types(q.dtype, torch.float32)
    q, k, v, eta = (x.to(dtype) for x in (q, k, v, eta))
    W, b, W_grad, b_grad, n = ttt_linear_start(q, W0, b0, state)
    scale = q.new_ones(mini_batch) if token_scale is None else token_scale.to(dtype)
    gamma, beta = ln_weight.to(dtype)[None], ln_bias.to(dtype)[None]  # [1, H, K]
    outputs = []
    for t in range(T):
        k_t, q_t, e_t = k[:, :, t], q[:, :, t], eta[:, :, t, None]
        grad = ttt_linear_inner_grad((k_t.unsqueeze(-2) @ W).squeeze(-2) + b, v[:, :, t] - k_t, gamma, beta, eps)
        W_grad = W_grad + (e_t * k_t).unsqueeze(-1) * grad.unsqueeze(-2)
        b_grad = b_grad + e_t * grad
        W_t, b_t = W - scale[n] * W_grad, b - scale[n] * b_grad
        z = (q_t.unsqueeze(-2) @ W_t).squeeze(-2) + b_t
        outputs.append(q_t + F.layer_norm(z, (K,), eps=eps) * gamma + beta)
        n += 1
        if n == mini_batch:  # the mini-batch is complete: its last weights start the next one
            W, b, W_grad, b_grad, n = W_t, b_t, torch.zeros_like(W_grad), torch.zeros_like(b_grad), 0
    o = torch.stack(outputs, dim=2) if outputs else q
    return o.to(out_dtype), (W, b, W_grad, b_grad, n)


def ttt_linear_chunked(q, k, v, eta, W0, b0, ln_weight, ln_bias, mini_batch: int = 16, token_scale=None,
                       state=None, eps: float = 1e-6):
    """TTT-Linear, dual form: the training form of `ttt_linear_recurrent` (same arguments, same results).

    q, k, v: [B, H, T, K]; eta: [B, H, T]; W0: [H, K, K]; b0, ln_weight, ln_bias: [H, K];
    token_scale: [mini_batch] or None; state: (W', b', G^W, G^b, n) as in `ttt_linear_recurrent`.
    Returns (o: [B, H, T, K] in q's dtype, final state).

    Per mini-batch (queries Q, keys X, gradients G = dl/dz at the mini-batch's start weights
    (W', b'), all [b, K]; eta [b]; tau = token_scale), the dual form never builds a per-token W:
        Z = Q W' + b' - tau * ((tril(Q X^T) + tril(1)) * eta_j) G,     o = Q + LN(Z)
        W'' = W' - tau_last * X^T (eta * G),   b'' = b' - tau_last * sum(eta * G)
    Only the gradient step (G needs W') loops over mini-batches, T / mini_batch steps; the reads
    Q W', the b x b mixing and the layer norms are batched over all mini-batches afterwards.
    Inside, b is the weight row of a constant feature 1 ([x, 1] [W; b]), so W and b step as one.
    A state that starts mid-mini-batch (n > 0) is handled by padding n dummy tokens in front
    (eta = 0: they change nothing) and adding the carried sums to the first mini-batch; a
    partial last mini-batch is padded the same way behind and returned as (W', b', G^W, G^b, n).
    Cost: O(T K (K + mini_batch)) per head. Computes in fp32 (fp64 stays fp64).
    """
    B, H, T, K = q.shape
    out_dtype, dtype = q.dtype, torch.promote_types(q.dtype, torch.float32)
    q, k, v, eta = (x.to(dtype) for x in (q, k, v, eta))
    W, b, W_grad, b_grad, n0 = ttt_linear_start(q, W0, b0, state)
    if T == 0:
        return q.to(out_dtype), (W, b, W_grad, b_grad, n0)
    scale = q.new_ones(mini_batch) if token_scale is None else token_scale.to(dtype)
    gamma, beta = ln_weight.to(dtype)[None, :, None, None], ln_bias.to(dtype)[None, :, None, None]
    back = -(n0 + T) % mini_batch
    q, k, v = (F.pad(x, (0, 0, n0, back)) for x in (q, k, v))
    eta = F.pad(eta, (n0, back))  # dummy tokens learn nothing
    N = (n0 + T + back) // mini_batch
    q, k, v = (x.reshape(B, H, N, mini_batch, K) for x in (q, k, v))
    eta = eta.reshape(B, H, N, mini_batch)
    target = v - k
    # The bias rides along as the weight of a constant feature 1: x W + b = [x, 1] [W; b].
    k1, q1 = F.pad(k, (0, 1), value=1.0), F.pad(q, (0, 1), value=1.0)  # [B, H, N, b, K + 1]
    Wb, carried = torch.cat([W, b.unsqueeze(-2)], dim=-2), torch.cat([W_grad, b_grad.unsqueeze(-2)], dim=-2)
    last = scale[-1]  # tau of a mini-batch's last token: the one its step uses
    step_size = (last * eta).unsqueeze(-1)  # [B, H, N, b, 1]
    starts, grads = [], []
    for n, (k_n, target_n, step_n) in enumerate(zip(k1.unbind(2), target.unbind(2), step_size.unbind(2))):
        starts.append(Wb)
        grads.append(ttt_linear_inner_grad(k_n @ Wb, target_n, gamma[:, :, 0], beta[:, :, 0], eps))
        if n == N - 1 and back:  # a partial last mini-batch takes no step
            break
        Wb = Wb - k_n.transpose(-1, -2) @ (step_n * grads[-1])
        if n == 0 and state is not None:
            Wb = Wb - last * carried
    G = torch.stack(grads, dim=2)  # [B, H, N, b, K]
    sums = torch.zeros_like(carried)  # after a complete mini-batch nothing is pending
    if back:  # the partial last mini-batch's sums go to the state
        sums = k_n.transpose(-1, -2) @ (eta[:, :, -1].unsqueeze(-1) * G[:, :, -1]) + (carried if N == 1 else sums)
    step = ((q @ k.transpose(-1, -2) + 1) * eta.unsqueeze(-2)).tril() @ G  # [B, H, N, b, K]
    if state is not None:  # the sums carried in by `state` belong to the first mini-batch
        step = torch.cat([(step[:, :, 0] + q1[:, :, 0] @ carried).unsqueeze(2), step[:, :, 1:]], dim=2)
    z = q1 @ torch.stack(starts, dim=2) - scale[:, None] * step
    o = q + F.layer_norm(z, (K,), eps=eps) * gamma + beta
    o = o.reshape(B, H, N * mini_batch, K)[:, :, n0:n0 + T]
    W, b, W_grad, b_grad = Wb[..., :-1, :], Wb[..., -1, :], sums[..., :-1, :], sums[..., -1, :]
    return o.to(out_dtype), (W, b, W_grad, b_grad, (n0 + T) % mini_batch)


def ttt_linear_rotary(x, positions, base: float = 10000.0):
    """Rotary position embedding of x: [B, H, T, K] at integer positions: [T] (pairs i, i + K/2)."""
    K = x.shape[-1]
    inv_freq = base ** -(torch.arange(0, K, 2, device=x.device, dtype=torch.float32) / K)
    angles = positions.to(torch.float32)[:, None] * inv_freq
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


class TTTLinear(GAUBase):
    """TTT-Linear layer (Mamba backbone): the hidden state is a linear model trained while reading.

    X: (batch, seq, D), normalized by the block; heads H = `ttt_n_heads`, head size K = D / H.
    Views (theta_K, theta_Q share one projection P and differ by a short causal depthwise conv,
    as in the paper's Mamba backbone; theta_V is a projection):
        k = conv_k(X P),  q = conv_q(X P),  v = X P_V,  then rotary positions on q and k
        (position within the mini-batch, as in the authors' code).
    Inner model per head: f(x) = x + LN(x W + b), W: K x K, b: K, LN with learnable scale and
    shift (`ttt_norm_weight`, `ttt_norm_bias`). Inner loss (self-supervised reconstruction):
        l(W, b; x_t) = 0.5 || LN(k_t W + b) + k_t - v_t ||^2
    Inner learning rate per token and head: eta_t = ttt_base_lr * sigmoid(x_t theta_lr + c) / K.
    Mini-batch TTT with b = `ttt_mini_batch` tokens: every gradient of a mini-batch is taken at
    its starting weights; token t (position i in its mini-batch) reads with
        W_t = W' - tau_i * sum_{s <= t in the mini-batch} eta_s grad_W l(W'; x_s)   (b likewise),
        z_t = f(W_t, b_t; q_t) = q_t + LN(q_t W_t + b_t),
    tau_i = max(0, 1/(i+1) + learned offset) (the authors' code; tau = 1 is the paper's Eq.).
    W0, b0 (the state every sequence starts from) are learned by the outer loop. Training uses
    the dual form (`ttt_linear_chunked`); `ttt_linear_recurrent` is the primal form.
    Output: Y = (LayerNorm(z) * GELU(X W_g)) W_o  (post-norm and gate of the Mamba backbone).
    Cost per token: 4 D^2 (projections) + about 3 D K (the inner model's forward, gradient and
    read) + 2 D b (the dual form's b x b mixing, b = mini-batch); the state per sequence is
    H (K^2 + K) weights plus as many accumulated gradient sums.

    Decoding: a step needs the TTT state (W', b', G^W, G^b, n) of `ttt_linear_recurrent`, the last
    `ttt_conv_size - 1` values of X P for conv_q and conv_k, and the position n in the mini-batch
    (for tau and the rotary angle): run `ttt_linear_recurrent` on the new token with that state.

    Hyperparameters: `ttt_n_heads`, `ttt_mini_batch` (16 in the paper), `ttt_base_lr` (1.0 for
    TTT-Linear), `ttt_conv_size` (4), `ttt_rope_base` (10000), `ttt_norm_eps` (1e-6).
    Init: W0 ~ N(0, 0.02), b0 = 0, inner LN scale 1 and shift 0, tau offsets 0 (`_init_weights`).
    """

    def __init__(self, embed_dim, block_loc, kwarg_all, device=None, dtype=None, ttt_n_heads: int = 4,
                 ttt_mini_batch: int = 16, ttt_base_lr: float = 1.0, ttt_conv_size: int = 4,
                 ttt_rope_base: float = 10000.0, ttt_norm_eps: float = 1e-6, **kwargs):
        self.factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__(embed_dim, block_loc, kwarg_all)
        D, H = embed_dim, ttt_n_heads
        if D % H or (D // H) % 2:
            raise ValueError(f"TTTLinear: embed_dim {D} needs ttt_n_heads {H} dividing it into even head sizes")
        self.n_heads, self.head_size, self.mini_batch = H, D // H, ttt_mini_batch
        self.base_lr, self.rope_base, self.eps = ttt_base_lr, ttt_rope_base, ttt_norm_eps
        fk = self.factory_kwargs
        self.qk_proj = nn.Linear(D, D, bias=False, **fk)
        self.v_proj = nn.Linear(D, D, bias=False, **fk)
        self.conv_q = nn.Conv1d(D, D, ttt_conv_size, groups=D, padding=ttt_conv_size - 1, **fk)
        self.conv_k = nn.Conv1d(D, D, ttt_conv_size, groups=D, padding=ttt_conv_size - 1, **fk)
        self.lr_proj = nn.Linear(D, H, bias=True, **fk)
        self.token_offset = nn.Parameter(torch.empty(ttt_mini_batch, **fk))
        self.W0 = nn.Parameter(torch.empty(H, D // H, D // H, **fk))
        self.b0 = nn.Parameter(torch.empty(H, D // H, **fk))
        self.ttt_norm_weight = nn.Parameter(torch.empty(H, D // H, **fk))
        self.ttt_norm_bias = nn.Parameter(torch.empty(H, D // H, **fk))
        self.post_norm = nn.LayerNorm(D, eps=ttt_norm_eps, **fk)
        self.g_proj = nn.Linear(D, D, bias=False, **fk)
        self.o_proj = nn.Linear(D, D, bias=False, **fk)
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self):
        nn.init.normal_(self.W0, std=0.02)
        nn.init.zeros_(self.b0)
        nn.init.ones_(self.ttt_norm_weight)
        nn.init.zeros_(self.ttt_norm_bias)
        nn.init.zeros_(self.token_offset)

    def token_scale(self):
        """tau_i = max(0, 1/(i+1) + offset_i) for positions i = 0..mini_batch-1 of a mini-batch."""
        position = torch.arange(1, self.mini_batch + 1, device=self.token_offset.device, dtype=torch.float32)
        return (1.0 / position + self.token_offset).clamp_min(0.0)

    def _forward(self, X, **Z):
        B, T, D = X.shape
        H, K = self.n_heads, self.head_size
        shared = self.qk_proj(X).transpose(1, 2)  # (B, D, T)
        q = self.conv_q(shared)[..., :T].view(B, H, K, T).transpose(-1, -2)
        k = self.conv_k(shared)[..., :T].view(B, H, K, T).transpose(-1, -2)
        v = self.v_proj(X).view(B, T, H, K).transpose(1, 2)
        positions = torch.arange(T, device=X.device) % self.mini_batch
        q, k = ttt_linear_rotary(q, positions, self.rope_base), ttt_linear_rotary(k, positions, self.rope_base)
        eta = (self.base_lr / K) * torch.sigmoid(self.lr_proj(X).float()).transpose(1, 2)  # (B, H, T)
        z, _ = ttt_linear_chunked(q, k, v, eta, self.W0, self.b0, self.ttt_norm_weight, self.ttt_norm_bias,
                                  self.mini_batch, self.token_scale(), eps=self.eps)
        z = self.post_norm(z.transpose(1, 2).reshape(B, T, D))
        return self.o_proj(z * F.gelu(self.g_proj(X), approximate="tanh"))


@gau_test
def test_ttt_linear_is_causal(device=None, dtype=None):
    unit = TTTLinear(32, (0, 1), {}, device=device, dtype=dtype, ttt_mini_batch=4)
    X = torch.randn(2, 11, 32, device=device, dtype=dtype)
    X2 = X.clone()
    X2[:, 6:] = torch.randn_like(X2[:, 6:])  # inside the second mini-batch
    Y, _ = unit(X)
    Y2, _ = unit(X2)
    assert torch.allclose(Y[:, :6], Y2[:, :6], atol=1e-5) and not torch.allclose(Y[:, 6:], Y2[:, 6:])
