import torch
from torch import nn
from torch.nn import functional as F

from designs.gau import GAUBase, gau_test


def delta_rule_recurrent(q, k, v, beta, state=None):
    """The delta rule, one token at a time: the reference form (Schlag et al., 2021; Yang et al., 2024).

    In the paper's convention the state is S_t in R^{V x K} and
        S_t = S_{t-1} - beta_t (S_{t-1} k_t - v_t) k_t^T = S_{t-1} (I - beta_t k_t k_t^T) + beta_t v_t k_t^T
        o_t = S_t q_t
    i.e. S_{t-1} k_t is what the memory recalls for key k_t, and one step of SGD on the
    loss ||S k_t - v_t||^2 / 2 with learning rate beta_t moves it towards v_t. The state
    tensor holds the transpose M_t = S_t^T (keys along dim -2, as in flash-linear-attention):
        M_t = M_{t-1} + beta_t k_t (v_t - M_{t-1}^T k_t)^T,   o_t = M_t^T q_t.

    q: [B, H, T, K]; k: [B, H, T, K] (L2-normalized in DeltaNet, so the transition has
    eigenvalues in [1 - 2 beta, 1]); v: [B, H, T, V]; beta: [B, H, T] in (0, 1);
    state: [B, H, K, V] or None (zeros).
    Returns (o: [B, H, T, V] in v's dtype, final state: [B, H, K, V] in the compute dtype,
    fp32 for half-precision inputs). Cost: O(T K V) time, T sequential steps.
    """
    B, H, T, K = k.shape
    V = v.shape[-1]
    out_dtype = v.dtype
    dtype = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype
    q, k, v, beta = q.to(dtype), k.to(dtype), v.to(dtype), beta.to(dtype)
    S = torch.zeros(B, H, K, V, device=q.device, dtype=dtype) if state is None else state.to(dtype)
    outputs = []
    for t in range(T):
        k_t = k[:, :, t]
        recalled = torch.einsum("bhk,bhkv->bhv", k_t, S)
        S = S + beta[:, :, t, None, None] * k_t[..., :, None] * (v[:, :, t] - recalled)[..., None, :]
        outputs.append(torch.einsum("bhk,bhkv->bhv", q[:, :, t], S))
    o = torch.stack(outputs, dim=2) if outputs else torch.zeros(B, H, 0, V, device=v.device, dtype=dtype)
    return o.to(out_dtype), S


def delta_rule_chunked(q, k, v, beta, chunk_size=64, state=None):
    """The delta rule in chunkwise-parallel form (Yang et al., 2024, section 3): for training.

    Computes exactly what `delta_rule_recurrent` computes (same shapes, same state
    convention: state = S^T, [B, H, K, V]) with matrix products, looping over chunks only.
    Within a chunk of C tokens the product of the C Householder-like transitions
    (I - beta_i k_i k_i^T) is kept in WY form. With the UT transform
        T = (I + tril(diag(beta) K K^T, -1))^{-1} diag(beta),   W = T K,   U = T V
    (the inverse of a unit lower-triangular C x C matrix per chunk, by a triangular solve),
    the pseudo-values of a chunk entered with state M are u = U - W M, and
        M_next  = M + K^T u
        O_chunk = Q M + tril(Q K^T) u.
    The loop over the T / C chunks computes only u and M_next (two small products per
    chunk); T, W, U and the outputs are computed for all chunks at once.

    q, k: [B, H, T, K]; v: [B, H, T, V]; beta: [B, H, T]; state: [B, H, K, V] or None.
    chunk_size: C (any positive integer: the result is exact for every C; T need not be a
    multiple of C, the tail is padded with beta = 0 tokens, which leave the state alone).
    Returns (o: [B, H, T, V] in v's dtype, final state: [B, H, K, V], fp32 for half inputs).
    Cost: O(T C (C + K + V) + T K V) time per head, T / C sequential steps. Half-precision
    inputs are computed in fp32 (the triangular solve needs it).
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
    if pad:
        q, k, v = (F.pad(x, (0, 0, 0, pad)) for x in (q, k, v))
        beta = F.pad(beta, (0, pad))
    # Batch and heads flattened, time cut into chunks: [B H, N, C, .]; the state is [B H, K, V].
    q, k, v = q.reshape(B * H, N, C, K), k.reshape(B * H, N, C, K), v.reshape(B * H, N, C, V)
    beta = beta.reshape(B * H, N, C, 1)
    k_beta = k * beta
    upper = torch.ones(C, C, dtype=torch.bool, device=q.device).triu(0)  # j >= i
    # A[i, j] = beta_i k_i . k_j for j < i; T diag(beta)^{-1} = (I + A)^{-1}
    A = (k_beta @ k.transpose(-1, -2)).masked_fill(upper, 0)
    eye = torch.eye(C, device=q.device, dtype=dtype).expand_as(A)
    inverse = torch.linalg.solve_triangular(A, eye, upper=False, unitriangular=True)
    W, U = inverse @ k_beta, inverse @ (v * beta)
    M = M.reshape(B * H, K, V)
    entering, pseudo_values = [], []
    for W_n, U_n, k_n in zip(W.unbind(1), U.unbind(1), k.transpose(-1, -2).unbind(1)):
        entering.append(M)
        u = torch.baddbmm(U_n, W_n, M, alpha=-1)  # U - W M
        pseudo_values.append(u)
        M = torch.baddbmm(M, k_n, u)  # M + K^T u
    entering = torch.stack(entering, dim=1)  # [B H, N, K, V]: the state before each chunk
    scores = (q @ k.transpose(-1, -2)).masked_fill(upper.triu(1), 0)  # causal: j <= i
    o = q @ entering + scores @ torch.stack(pseudo_values, dim=1)
    o = o.view(B, H, N * C, V)[:, :, :T]
    return o.to(out_dtype), M.view(B, H, K, V)


class DeltaNetMixer(GAUBase):
    """DeltaNet token mixer (Yang et al., 2024, "Parallelizing Linear Transformers with the Delta Rule").

    A linear-attention layer whose matrix memory is edited by the delta rule instead of
    only added to: for each head,
        q_t, k_t, v_t = SiLU(CausalConv_4(W_q x)_t), SiLU(CausalConv_4(W_k x)_t), SiLU(CausalConv_4(W_v x)_t)
        q_t, k_t = q_t / ||q_t||_2, k_t / ||k_t||_2
        beta_t = sigmoid(w_beta . x_t)                    (one writing strength per head)
        S_t = S_{t-1} - beta_t (S_{t-1} k_t - v_t) k_t^T  (replace the value stored under k_t)
        o_t = S_t q_t
    then an RMSNorm over each head's output (weight shared by the heads) and an output
    projection: Y = W_o [RMSNorm(o^1); ...; RMSNorm(o^H)]. The short convolutions are
    depthwise and causal (kernel `deltanet_conv_size`). Keys and queries have embed_dim
    channels in all, values too (expand 1, as the paper), split over `deltanet_heads`
    heads. No biases. q is not scaled by 1/sqrt(head_dim): it is unit-norm and the output
    norm follows.

    Training uses `delta_rule_chunked` (chunks of `deltanet_chunk_size`); decoding state per
    head is a head_dim x head_dim matrix (constant in sequence length).
    Cost per token (d = embed_dim, C chunk size): 4 d^2 multiply-adds for the projections,
    about 5 C d within chunks and 3 d^2 / H for the state.
    Hyperparameters: `deltanet_heads` (head count; embed_dim must be divisible by it),
    `deltanet_conv_size` (short convolution width, 4), `deltanet_chunk_size` (C of the
    chunked form; any value gives the same output, it only changes speed: 32 is the fastest
    on CPU at 256 tokens, the paper uses 64 on GPUs).
    """

    def __init__(self, embed_dim, block_loc, kwarg_all, device=None, dtype=None, deltanet_heads: int = 4,
                 deltanet_conv_size: int = 4, deltanet_chunk_size: int = 32, **kwargs):
        self.factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__(embed_dim, block_loc, kwarg_all)
        if embed_dim % deltanet_heads:
            raise ValueError(f"DeltaNetMixer: embed_dim {embed_dim} is not divisible by deltanet_heads "
                             f"{deltanet_heads}")
        self.n_heads, self.head_dim = deltanet_heads, embed_dim // deltanet_heads
        self.chunk_size = deltanet_chunk_size
        channels = 3 * embed_dim
        # Every input projection in one matrix (the split is [q | k | v | beta]), then one depthwise
        # causal convolution over the q, k, v channels (the same as three separate ones).
        self.in_proj = nn.Linear(embed_dim, channels + deltanet_heads, bias=False, **self.factory_kwargs)
        self.qkv_conv = nn.Conv1d(channels, channels, deltanet_conv_size, groups=channels,
                                  padding=deltanet_conv_size - 1, bias=False, **self.factory_kwargs)
        self.o_norm = nn.RMSNorm(self.head_dim, eps=1e-5, **self.factory_kwargs)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=False, **self.factory_kwargs)

    def _forward(self, X, **Z):
        B, T, D = X.shape
        H, hd = self.n_heads, self.head_dim
        proj = self.in_proj(X)
        # Convolution and delta rule in fp32 at least (CPU has no fast half-precision depthwise conv).
        dtype = torch.promote_types(X.dtype, torch.float32)
        conv = self.qkv_conv
        qkv = F.conv1d(proj[..., :3 * D].transpose(1, 2).to(dtype), conv.weight.to(dtype), padding=conv.padding,
                       groups=conv.groups)[..., :T]
        qkv = F.silu(qkv).view(B, 3, H, hd, T).transpose(-1, -2)  # [B, 3, H, T, hd]
        q = F.normalize(qkv[:, 0], dim=-1, eps=1e-6)
        k = F.normalize(qkv[:, 1], dim=-1, eps=1e-6)
        beta = torch.sigmoid(proj[..., 3 * D:]).transpose(1, 2)  # [B, H, T]
        o, _ = delta_rule_chunked(q, k, qkv[:, 2], beta, self.chunk_size)
        o = self.o_norm(o.transpose(1, 2).to(X.dtype))  # [B, T, H, hd]
        return self.out_proj(o.reshape(B, T, D))


@gau_test
def test_deltanet_mixer_chunked_equals_recurrent(device=None, dtype=None):
    torch.manual_seed(0)
    B, H, T, K, V = 2, 2, 11, 4, 6
    q = F.normalize(torch.randn(B, H, T, K, device=device, dtype=torch.float64), dim=-1)
    k = F.normalize(torch.randn(B, H, T, K, device=device, dtype=torch.float64), dim=-1)
    v = torch.randn(B, H, T, V, device=device, dtype=torch.float64)
    beta = torch.rand(B, H, T, device=device, dtype=torch.float64)
    o_ref, s_ref = delta_rule_recurrent(q, k, v, beta)
    o, s = delta_rule_chunked(q, k, v, beta, chunk_size=4)
    assert torch.allclose(o, o_ref, atol=1e-10) and torch.allclose(s, s_ref, atol=1e-10)


@gau_test
def test_deltanet_mixer_is_causal(device=None, dtype=None):
    unit = DeltaNetMixer(32, (0, 1), {}, device=device, dtype=dtype, deltanet_chunk_size=4)
    X = torch.randn(2, 10, 32, device=device, dtype=dtype)
    X2 = X.clone()
    X2[:, 6:] = torch.randn_like(X2[:, 6:])
    Y, _ = unit(X)
    Y2, _ = unit(X2)
    assert Y.shape == X.shape
    assert torch.allclose(Y[:, :6], Y2[:, :6], atol=1e-5)
    assert not torch.allclose(Y[:, 6:], Y2[:, 6:])
