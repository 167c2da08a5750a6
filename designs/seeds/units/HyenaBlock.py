import torch

from designs.gau import GAUBase, gau_test


class HyenaBlock(GAUBase):
    """The Hyena block (Poli et al., 2023): a transformer block with Hyena in place of attention.

    H = X + HyenaOperator(LayerNorm(X)); Y = H + GeluMLP(LayerNorm(H)). Pre-LayerNorm
    residual blocks as in GPT-2; the MLP is 2x wide in the paper's Pile models
    (d_inner = 2 d_model), so a block holds about 8 embed_dim^2 parameters plus a small
    filter network. The block owns its two norms and both residuals; it has no
    hyperparameters of its own.
    """

    def __init__(self, embed_dim, block_loc, kwarg_all, device=None, dtype=None, **kwargs):
        self.factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__(embed_dim, block_loc, kwarg_all)
        unit_kwargs = dict(embed_dim=self.embed_dim, block_loc=self.block_loc, kwarg_all=self.kwarg_all,
                           **self.factory_kwargs, **self.kwarg_all)
        self.norm1 = LayerNorm(**unit_kwargs)
        self.mixer = HyenaOperator(**unit_kwargs)
        self.norm2 = LayerNorm(**unit_kwargs)
        self.mlp = GeluMLP(**unit_kwargs)

    def _forward(self, X, **Z):
        H, Z = self.norm1(X, **Z)
        H, Z = self.mixer(H, **Z)
        X = X + H
        H, Z = self.norm2(X, **Z)
        H, Z = self.mlp(H, **Z)
        return X + H, Z


@gau_test
def test_hyena_block_shapes(device=None, dtype=None):
    block = HyenaBlock(32, (0, 2), {"hyena_max_len": 64}, device=device, dtype=dtype)
    Y, Z = block(torch.randn(2, 7, 32, device=device, dtype=dtype))
    assert Y.shape == (2, 7, 32) and isinstance(Z, dict)
