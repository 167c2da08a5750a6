import torch

from designs.gau import GAUBase, gau_test


class Mamba2Block(GAUBase):
    """The Mamba-2 block (Dao and Gu, 2024): a pre-RMSNorm Mamba-2 mixer in a residual.

    Y = X + Mamba2Mixer(RMSNorm(X)). As in the paper's language models (and Mamba's),
    the block has no MLP: the mixer's expanded gated branch (expand 2, SiLU gate) plays
    that role, so a block holds about 6 embed_dim^2 parameters, half a transformer
    block's, and a model of equal size has about twice as many blocks.
    The block owns its norm and its residual; it has no hyperparameters of its own.
    """

    def __init__(self, embed_dim, block_loc, kwarg_all, device=None, dtype=None, **kwargs):
        self.factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__(embed_dim, block_loc, kwarg_all)
        unit_kwargs = dict(embed_dim=self.embed_dim, block_loc=self.block_loc, kwarg_all=self.kwarg_all,
                           **self.factory_kwargs, **self.kwarg_all)
        self.norm = RMSNorm(**unit_kwargs)
        self.mixer = Mamba2Mixer(**unit_kwargs)

    def _forward(self, X, **Z):
        H, Z = self.norm(X, **Z)
        H, Z = self.mixer(H, **Z)
        return X + H, Z


@gau_test
def test_mamba2_block_shapes(device=None, dtype=None):
    block = Mamba2Block(32, (0, 2), {}, device=device, dtype=dtype)
    Y, Z = block(torch.randn(2, 7, 32, device=device, dtype=dtype))
    assert Y.shape == (2, 7, 32) and isinstance(Z, dict)
