import torch
from torch import nn
from torch.nn import functional as F

from designs.gau import GAUBase, gau_test


def rotary_tables(seq_len: int, head_dim: int, base: float, device, dtype):
    """cos, sin of rotary position embeddings (Su et al., 2021): each (seq_len, head_dim // 2)."""
    inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(seq_len, device=device, dtype=torch.float32), inv_freq)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rotary(x, cos, sin):
    """Rotate channel pairs (i, i + head_dim/2) of x: (batch, heads, seq, head_dim) by position."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


class MHA(GAUBase):
    """Causal multi-head self-attention with rotary position embeddings.

    Projects X to queries, keys and values in `n_heads` heads (keys and values in
    `n_kv_heads` heads shared by groups of queries, as in grouped-query attention,
    when set), rotates queries and keys by position (RoPE), attends causally with
    softmax(QK^T / sqrt(head_dim)), and projects the heads back to embed_dim.
    Cost: O(seq^2) time per layer; a KV cache of O(seq) per token when decoding.
    Hyperparameters: `n_heads`, `n_kv_heads` (None: = n_heads), `rope_base`,
    `attn_bias` (biases on the projections, as in GPT-2).
    """

    def __init__(self, embed_dim, block_loc, kwarg_all, device=None, dtype=None, n_heads: int = 4,
                 n_kv_heads: int | None = None, rope_base: float = 10000.0, attn_bias: bool = False, **kwargs):
        self.factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__(embed_dim, block_loc, kwarg_all)
        n_kv_heads = n_kv_heads or n_heads
        if embed_dim % n_heads or n_heads % n_kv_heads or (embed_dim // n_heads) % 2:
            raise ValueError(f"MHA: embed_dim {embed_dim} needs n_heads {n_heads} dividing it into even head "
                             f"dims, and n_kv_heads {n_kv_heads} dividing n_heads")
        self.n_heads, self.n_kv_heads, self.rope_base = n_heads, n_kv_heads, rope_base
        self.head_dim = embed_dim // n_heads
        kv_dim = n_kv_heads * self.head_dim
        self.qkv_proj = nn.Linear(embed_dim, embed_dim + 2 * kv_dim, bias=attn_bias, **self.factory_kwargs)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=attn_bias, **self.factory_kwargs)

    def _forward(self, X, **Z):
        B, T, D = X.shape
        kv_dim = self.n_kv_heads * self.head_dim
        q, k, v = self.qkv_proj(X).split((D, kv_dim, kv_dim), dim=-1)
        q = q.view(B, T, self.n_heads, self.head_dim).transpose(1, 2)
        k = k.view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = v.view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        cos, sin = rotary_tables(T, self.head_dim, self.rope_base, X.device, q.dtype)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.n_kv_heads != self.n_heads)
        return self.out_proj(y.transpose(1, 2).reshape(B, T, D))


@gau_test
def test_mha_is_causal(device=None, dtype=None):
    unit = MHA(32, (0, 1), {}, device=device, dtype=dtype, n_heads=4, n_kv_heads=2)
    X = torch.randn(2, 8, 32, device=device, dtype=dtype)
    X2 = X.clone()
    X2[:, 5:] = torch.randn_like(X2[:, 5:])
    Y, _ = unit(X)
    Y2, _ = unit(X2)
    assert torch.allclose(Y[:, :5], Y2[:, :5], atol=1e-5)
    assert not torch.allclose(Y[:, 5:], Y2[:, 5:])
