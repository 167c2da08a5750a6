import torch

from designs.gau import GAUBase, gau_test


class GPT2Block(GAUBase):
    """The GPT-2 transformer block: pre-LayerNorm attention and MLP, each in a residual.

    H = X + MHA(LayerNorm(X)); Y = H + GeluMLP(LayerNorm(H)). The block owns its
    two norms and both residual connections; attention is the only token mixer.
    """

    def __init__(self, embed_dim, block_loc, kwarg_all, device=None, dtype=None, **kwargs):
        self.factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__(embed_dim, block_loc, kwarg_all)
        unit_kwargs = dict(embed_dim=self.embed_dim, block_loc=self.block_loc, kwarg_all=self.kwarg_all,
                           **self.factory_kwargs, **self.kwarg_all)
        self.norm1 = LayerNorm(**unit_kwargs)
        self.attn = MHA(**unit_kwargs)
        self.norm2 = LayerNorm(**unit_kwargs)
        self.mlp = GeluMLP(**unit_kwargs)

    def _forward(self, X, **Z):
        H, Z = self.norm1(X, **Z)
        H, Z = self.attn(H, **Z)
        X = X + H
        H, Z = self.norm2(X, **Z)
        H, Z = self.mlp(H, **Z)
        return X + H, Z


@gau_test
def test_gpt2_block_shapes(device=None, dtype=None):
    block = GPT2Block(32, (0, 2), {}, device=device, dtype=dtype)
    Y, Z = block(torch.randn(2, 7, 32, device=device, dtype=dtype))
    assert Y.shape == (2, 7, 32) and isinstance(Z, dict)
