import torch

from designs.gau import GAUBase, gau_test


class GatedDeltaNetBlock(GAUBase):
    """The Gated DeltaNet block (Yang, Kautz, Hatamizadeh, 2024): Llama-style, gated delta rule as mixer.

    H = X + GatedDeltaNetMixer(RMSNorm(X)); Y = H + SwiGLU(RMSNorm(H)). The block owns its
    two norms and both residual connections; GatedDeltaNetMixer (delta-rule linear
    attention with a Mamba2-style decay and an output gate) replaces attention, so the
    block needs no position embedding and decodes with a constant-size state.
    """

    def __init__(self, embed_dim, block_loc, kwarg_all, device=None, dtype=None, **kwargs):
        self.factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__(embed_dim, block_loc, kwarg_all)
        unit_kwargs = dict(embed_dim=self.embed_dim, block_loc=self.block_loc, kwarg_all=self.kwarg_all,
                           **self.factory_kwargs, **self.kwarg_all)
        self.mixer_norm = RMSNorm(**unit_kwargs)
        self.mixer = GatedDeltaNetMixer(**unit_kwargs)
        self.ffn_norm = RMSNorm(**unit_kwargs)
        self.ffn = SwiGLU(**unit_kwargs)

    def _forward(self, X, **Z):
        H, Z = self.mixer_norm(X, **Z)
        H, Z = self.mixer(H, **Z)
        X = X + H
        H, Z = self.ffn_norm(X, **Z)
        H, Z = self.ffn(H, **Z)
        return X + H, Z


@gau_test
def test_gated_deltanet_block_shapes(device=None, dtype=None):
    block = GatedDeltaNetBlock(32, (0, 2), {}, device=device, dtype=dtype)
    Y, Z = block(torch.randn(2, 7, 32, device=device, dtype=dtype))
    assert Y.shape == (2, 7, 32) and isinstance(Z, dict)
