import math

import torch
from torch import nn

from designs.gau import GAUBase, gau_test


class HyenaFFTConvFn(torch.autograd.Function):
    """FFT causal convolution with a hand-written backward that keeps causality exact.

    forward(u [B, D, T], k [D, T], bias [D]) -> y [B, D, T] (fp32 or fp64 tensors).
    The FFT mixes every position numerically (roundoff ~1e-8 of the signal reaches the
    past). The backward is also by FFT (correlations with the saved spectra), but an input
    after the last position where the upstream gradient is nonzero gets exactly zero
    gradient, which is the exact value (dy_t/du_s = 0 for s > t), not FFT roundoff.
    """

    @staticmethod
    def forward(ctx, u, k, bias):
        n = 2 * u.shape[-1]
        u_f, k_f = torch.fft.rfft(u, n=n), torch.fft.rfft(k, n=n)
        ctx.save_for_backward(u, bias, u_f, k_f)
        return torch.fft.irfft(u_f * k_f, n=n)[..., : u.shape[-1]] + u * bias[:, None]

    @staticmethod
    def backward(ctx, g):
        u, bias, u_f, k_f = ctx.saved_tensors
        T = u.shape[-1]
        g_f = torch.fft.rfft(g, n=2 * T)
        grad_u = grad_k = grad_bias = None
        if ctx.needs_input_grad[0]:  # dL/du_s = sum_{t >= s} k[t - s] g_t + bias g_s
            grad_u = torch.fft.irfft(g_f * k_f.conj(), n=2 * T)[..., :T] + g * bias[:, None]
            steps = torch.arange(T, device=g.device)
            last = torch.where(g != 0, steps, -1).amax(-1, keepdim=True)
            grad_u = grad_u.masked_fill(steps > last, 0.0)
        if ctx.needs_input_grad[1]:  # dL/dk_j = sum_{b, t} g_t u_{t - j}
            grad_k = torch.fft.irfft((g_f * u_f.conj()).sum(0), n=2 * T)[..., :T]
        if ctx.needs_input_grad[2]:
            grad_bias = (g * u).sum((0, 2))
        return grad_u, grad_k, grad_bias


def hyena_fftconv(u, k, bias):
    """Causal long convolution by FFT (Hyena's FFTConv), with a per-channel skip term.

    y[b, d, t] = sum_{j=0..t} k[d, j] u[b, d, t - j] + bias[d] u[b, d, t]
    u:    [B, D, T]   input signal, channels first
    k:    [D, L]      filter taps for lags 0..L-1, L >= T (only the first T are used)
    bias: [D]         skip ("D") term
    Returns y: [B, D, T] in u's dtype. Both signals are zero-padded to 2T so the circular
    FFT product is the linear (causal) convolution; O(B D T log T). Runs in fp32 (fp64 for
    fp64 inputs): CPU FFTs do not take bf16. Gradients by HyenaFFTConvFn.
    """
    work = torch.promote_types(u.dtype, torch.float32)
    y = HyenaFFTConvFn.apply(u.to(work), k[..., : u.shape[-1]].to(work), bias.to(work))
    return y.to(u.dtype)


def hyena_conv_recurrent(u, k, bias, state=None):
    """The same causal convolution computed token by token (reference / decoding form).

    u:     [B, D, T]   new inputs
    k:     [D, L]      filter taps for lags 0..L-1, L >= S + T (taps index absolute lags)
    bias:  [D]
    state: [B, D, S]   the S inputs seen so far, oldest first (None: S = 0)
    Returns y: [B, D, T] and the new state [B, D, S + T] (the history grows by T: a long
    convolution's exact state is its whole input history). Each output is
    y_t = sum_{q <= p} k[p - q] u_q + bias u_t at absolute position p = S + t.
    """
    b, D, T = u.shape
    past = u.new_zeros(b, D, 0) if state is None else state.to(u.dtype)
    history = torch.cat([past, u], dim=-1)
    S = past.shape[-1]
    flipped = k[:, : S + T].to(u.dtype).flip(-1)  # flipped[:, m] = k[:, S + T - 1 - m]
    ys = []
    for t in range(T):
        p = S + t
        taps = flipped[:, S + T - 1 - p:]  # the tap of input q <= p is k[p - q]
        ys.append((history[..., : p + 1] * taps).sum(-1) + bias.to(u.dtype) * u[..., t])
    y = torch.stack(ys, dim=-1) if ys else u.new_zeros(b, D, 0)
    return y, history


class HyenaImplicitFilter(nn.Module):
    """Hyena's implicit long filters: h^n_t = window_d(t) * FFN(PositionalEncoding(t)).

    PositionalEncoding(t) = [t / (max_len - 1), cos(f_m w_t), -sin(f_m w_t)] with
    w_t = 2 pi t / max_len and bands f_m = linspace(1e-4, M - 1, M), M = (emb_dim - 1) / 2
    (fixed features, no parameters). FFN: Linear(emb_dim, width), sin(freq * .), then
    `inner_layers` x [Linear(width, width), sin(freq * .)], then Linear(width, n_filters *
    channels) without bias; `freq` is a learned frequency per hidden unit, shared by the
    sine layers. Window: exp(-|delta_d| t / (max_len - 1)), with the decay rates delta_d
    spread over the channels of each filter from log(target) / slow to log(target) / fast,
    so channel responses fall to `target` between fast and slow fractions of max_len.
    `bias` (n_filters x channels) is the per-channel skip term of each convolution.
    The filter of position t depends on t and max_len only, so any length up to max_len works.
    The positional features are fixed here (the authors' code can also train them, which
    ties parameters to max_len); everything else follows the paper's Pile models.
    """

    def __init__(self, channels, n_filters, max_len, emb_dim, width, inner_layers, sine_freq,
                 decay_fast, decay_slow, decay_target, device=None, dtype=None):
        super().__init__()
        if emb_dim < 3 or emb_dim % 2 == 0:
            raise ValueError(f"HyenaOperator: hyena_filter_emb_dim must be odd and >= 3 (time, cos, sin), "
                             f"got {emb_dim}")
        factory = {"device": device, "dtype": dtype}
        self.channels, self.n_filters, self.max_len, self.emb_dim = channels, n_filters, max_len, emb_dim
        self.sine_freq = sine_freq
        self.decay = (math.log(decay_target) / decay_slow, math.log(decay_target) / decay_fast)
        self.fc_in = nn.Linear(emb_dim, width, **factory)
        self.fc_inner = nn.ModuleList(nn.Linear(width, width, **factory) for _ in range(inner_layers))
        self.fc_filters = nn.Linear(width, n_filters * channels, bias=False, **factory)
        self.freq = nn.Parameter(torch.empty(width, **factory))
        self.bias = nn.Parameter(torch.empty(n_filters, channels, **factory))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self):
        self.freq.fill_(self.sine_freq)
        self.bias.normal_()

    def features(self, T, device):
        """(positional features [T, emb_dim], normalized time [T]) for positions 0..T-1, fp32."""
        pos = torch.arange(T, device=device, dtype=torch.float32)
        bands = (self.emb_dim - 1) // 2
        f = torch.linspace(1e-4, bands - 1, bands, device=device)
        angle = (2 * math.pi / self.max_len) * pos[:, None] * f
        t = pos / (self.max_len - 1)
        return torch.cat([t[:, None], angle.cos(), -angle.sin()], dim=-1), t

    def forward(self, T, device=None):
        """The filters for lags 0..T-1: [n_filters, channels, T]."""
        z, t = self.features(T, device or self.freq.device)
        h = torch.sin(self.freq * self.fc_in(z.to(self.freq.dtype)))
        for fc in self.fc_inner:
            h = torch.sin(self.freq * fc(h))
        h = self.fc_filters(h).view(T, self.n_filters, self.channels)
        rates = torch.linspace(*self.decay, self.channels, device=t.device).abs()
        window = torch.exp(-t[:, None] * rates).to(h.dtype)  # [T, channels]
        return (h * window[:, None, :]).permute(1, 2, 0)


class HyenaOperator(GAUBase):
    """The Hyena operator (Poli et al., 2023): implicit long convolutions interleaved with gating.

    Order N (default 2): in_proj(X) -> N + 1 streams of width D = embed_dim, each passed
    through a short causal depthwise convolution (width 3): gates x^1..x^N and a value v.
    Then, for n = 1..N (the paper's Algorithm 3):
        v <- x^n * (h^n conv v + b^n v)        (causal long convolution over the sequence)
    and Y = out_proj(v). The long filters h^n (one per channel, as long as the sequence)
    are implicit: generated by HyenaImplicitFilter, a small sine-activated FFN of the
    position, windowed by an exponential decay. Convolutions run by FFT (`hyena_fftconv`);
    `hyena_conv_recurrent` is the token-by-token reference form. Sequences may be up to
    `hyena_max_len` long (positions are normalized by it).
    Cost per token: 2 (N + 2) D^2 FLOPs of projections, O(N D log T) for the FFT convolutions;
    no state to cache except the input history of each convolution when decoding.
    Hyperparameters: `hyena_order` (N), `hyena_max_len`, `hyena_short_conv_size`,
    `hyena_filter_order` (FFN width), `hyena_filter_emb_dim` (positional features, odd),
    `hyena_filter_inner_layers`, `hyena_filter_sine_freq`, `hyena_decay_fast`,
    `hyena_decay_slow`, `hyena_decay_target` (the exponential window).
    Defaults follow the paper's Pile models: order 2, filter FFN width 64 and depth 4
    (2 inner layers), 33 positional features, sine frequency 14, short conv width 3, decay
    window from 0.3 to 1.5 of max_len down to 1e-2, max_len 2048. (The authors' code gates
    v by x^1 before the first convolution and so uses N - 1 long filters; this unit
    follows the paper's Algorithm 3, N filters, each convolution followed by its gate.)
    """

    def __init__(self, embed_dim, block_loc, kwarg_all, device=None, dtype=None, hyena_order: int = 2,
                 hyena_max_len: int = 2048, hyena_short_conv_size: int = 3, hyena_filter_order: int = 64,
                 hyena_filter_emb_dim: int = 33, hyena_filter_inner_layers: int = 2,
                 hyena_filter_sine_freq: float = 14.0, hyena_decay_fast: float = 0.3,
                 hyena_decay_slow: float = 1.5, hyena_decay_target: float = 0.01, **kwargs):
        self.factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__(embed_dim, block_loc, kwarg_all)
        if hyena_order < 1:
            raise ValueError(f"HyenaOperator: hyena_order must be >= 1, got {hyena_order}")
        self.order, self.max_len = hyena_order, hyena_max_len
        width = (hyena_order + 1) * embed_dim
        self.in_proj = nn.Linear(embed_dim, width, **self.factory_kwargs)
        self.short_conv = nn.Conv1d(width, width, hyena_short_conv_size, groups=width,
                                    padding=hyena_short_conv_size - 1, **self.factory_kwargs)
        self.filter = HyenaImplicitFilter(embed_dim, hyena_order, hyena_max_len, hyena_filter_emb_dim,
                                          hyena_filter_order, hyena_filter_inner_layers, hyena_filter_sine_freq,
                                          hyena_decay_fast, hyena_decay_slow, hyena_decay_target,
                                          **self.factory_kwargs)
        self.out_proj = nn.Linear(embed_dim, embed_dim, **self.factory_kwargs)

    def _init_weights(self):
        self.filter.reset_parameters()

    def _forward(self, X, **Z):
        T = X.shape[1]
        if T > self.max_len:
            raise ValueError(f"HyenaOperator: sequence length {T} exceeds hyena_max_len {self.max_len}")
        streams = self.short_conv(self.in_proj(X).transpose(1, 2))[..., :T]
        *gates, v = streams.split(self.embed_dim, dim=1)  # each [B, D, T]
        k = self.filter(T, X.device)
        for n in range(self.order):
            v = gates[n] * hyena_fftconv(v, k[n], self.filter.bias[n])
        return self.out_proj(v.transpose(1, 2))


@gau_test
def test_hyena_fftconv_matches_direct(device=None, dtype=None):
    torch.manual_seed(0)
    u = torch.randn(2, 3, 11, device=device, dtype=torch.float64)
    k = torch.randn(3, 11, device=device, dtype=torch.float64)
    bias = torch.randn(3, device=device, dtype=torch.float64)
    y, state = hyena_conv_recurrent(u, k, bias)
    assert torch.allclose(hyena_fftconv(u, k, bias), y, atol=1e-10) and state.shape == (2, 3, 11)


@gau_test
def test_hyena_operator_any_length(device=None, dtype=None):
    unit = HyenaOperator(32, (0, 2), {}, device=device, dtype=dtype, hyena_max_len=64)
    X = torch.randn(2, 40, 32, device=device, dtype=dtype)
    Y, _ = unit(X)
    Y_short, _ = unit(X[:, :9])  # causal: a prefix gives the prefix of the output
    atol = 1e-4 if dtype in (None, torch.float32, torch.float64) else 5e-2
    assert Y.shape == X.shape and torch.allclose(Y[:, :9], Y_short, atol=atol)
