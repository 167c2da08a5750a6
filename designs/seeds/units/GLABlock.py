import torch

from designs.gau import GAUBase, gau_test


class GLABlock(GAUBase):
    """The GLA Transformer block: pre-RMSNorm gated linear attention and SwiGLU, each in a residual.

    H = X + GatedLinearAttention(RMSNorm(X)); Y = H + SwiGLU(RMSNorm(H)), the Llama block with
    its attention replaced by GLA (Yang et al. 2023, Sec. 5). GLA holds about 4 d^2 parameters
    like attention, the SwiGLU (ffn_mult 8/3) about 8 d^2. No positional encoding anywhere:
    the data-dependent decay orders the tokens.
    """

    def __init__(self, embed_dim, block_loc, kwarg_all, device=None, dtype=None, **kwargs):
        self.factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__(embed_dim, block_loc, kwarg_all)
        unit_kwargs = dict(embed_dim=self.embed_dim, block_loc=self.block_loc, kwarg_all=self.kwarg_all,
                           **self.factory_kwargs, **self.kwarg_all)
        self.attn_norm = RMSNorm(**unit_kwargs)
        self.attn = GatedLinearAttention(**unit_kwargs)
        self.ffn_norm = RMSNorm(**unit_kwargs)
        self.ffn = SwiGLU(**unit_kwargs)

    def _forward(self, X, **Z):
        H, Z = self.attn_norm(X, **Z)
        H, Z = self.attn(H, **Z)
        X = X + H
        H, Z = self.ffn_norm(X, **Z)
        H, Z = self.ffn(H, **Z)
        return X + H, Z


@gau_test
def test_gla_block_shapes(device=None, dtype=None):
    block = GLABlock(32, (0, 2), {}, device=device, dtype=dtype)
    Y, Z = block(torch.randn(2, 7, 32, device=device, dtype=dtype))
    assert Y.shape == (2, 7, 32) and isinstance(Z, dict)
