import torch

from designs.gau import GAUBase, gau_test


class RetNetBlock(GAUBase):
    """The RetNet block: pre-RMSNorm multi-scale retention and a SwiGLU feed-forward layer, each in a residual.

    H = X + MultiScaleRetention(RMSNorm(X)); Y = H + SwiGLU(RMSNorm(H)).
    The paper's block (Sun et al. 2023, Sec. 2.3) uses LayerNorm and a GELU FFN of width 2d;
    here, as in later RetNet implementations, RMSNorm and a SwiGLU of the same parameter budget
    (ffn_mult 4/3: 3 * 4/3 d^2 = 4 d^2 parameters, as the 2d GELU FFN), so a block holds about
    12 d^2 parameters like a transformer block. Retention is the only token mixer.
    """

    def __init__(self, embed_dim, block_loc, kwarg_all, device=None, dtype=None, **kwargs):
        self.factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__(embed_dim, block_loc, kwarg_all)
        unit_kwargs = dict(embed_dim=self.embed_dim, block_loc=self.block_loc, kwarg_all=self.kwarg_all,
                           **self.factory_kwargs, **self.kwarg_all)
        self.retention_norm = RMSNorm(**unit_kwargs)
        self.retention = MultiScaleRetention(**unit_kwargs)
        self.ffn_norm = RMSNorm(**unit_kwargs)
        self.ffn = SwiGLU(**unit_kwargs)

    def _forward(self, X, **Z):
        H, Z = self.retention_norm(X, **Z)
        H, Z = self.retention(H, **Z)
        X = X + H
        H, Z = self.ffn_norm(X, **Z)
        H, Z = self.ffn(H, **Z)
        return X + H, Z


@gau_test
def test_retnet_block_shapes(device=None, dtype=None):
    block = RetNetBlock(32, (0, 2), {}, device=device, dtype=dtype)
    Y, Z = block(torch.randn(2, 7, 32, device=device, dtype=dtype))
    assert Y.shape == (2, 7, 32) and isinstance(Z, dict)
