import torch

from designs.gau import GAUBase, gau_test


class RWKV6Block(GAUBase):
    """The RWKV-6 (Finch) block: pre-LayerNorm time mixing then channel mixing, each in a residual.

    H = X + RWKV6TimeMix(LayerNorm(X));  Y = H + RWKV6ChannelMix(LayerNorm(H)).
    The first block (block_loc[0] == 0) also normalizes its input with one more LayerNorm,
    as RWKV does right after the embedding (`ln0`). Both mixers shift tokens by one step,
    so a block sees the previous token even before any state is involved.
    """

    def __init__(self, embed_dim, block_loc, kwarg_all, device=None, dtype=None, **kwargs):
        self.factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__(embed_dim, block_loc, kwarg_all)
        unit_kwargs = dict(embed_dim=self.embed_dim, block_loc=self.block_loc, kwarg_all=self.kwarg_all,
                           **self.factory_kwargs, **self.kwarg_all)
        self.norm0 = LayerNorm(**unit_kwargs) if self.block_loc[0] == 0 else None
        self.norm1 = LayerNorm(**unit_kwargs)
        self.time_mix = RWKV6TimeMix(**unit_kwargs)
        self.norm2 = LayerNorm(**unit_kwargs)
        self.channel_mix = RWKV6ChannelMix(**unit_kwargs)

    def _forward(self, X, **Z):
        if self.norm0 is not None:
            X, Z = self.norm0(X, **Z)
        H, Z = self.norm1(X, **Z)
        H, Z = self.time_mix(H, **Z)
        X = X + H
        H, Z = self.norm2(X, **Z)
        H, Z = self.channel_mix(H, **Z)
        return X + H, Z


@gau_test
def test_rwkv6_block_shapes(device=None, dtype=None):
    first = RWKV6Block(32, (0, 2), {}, device=device, dtype=dtype)
    second = RWKV6Block(32, (1, 2), {}, device=device, dtype=dtype)
    assert first.norm0 is not None and second.norm0 is None
    H, Z = first(torch.randn(2, 11, 32, device=device, dtype=dtype))
    Y, Z = second(H, **Z)
    assert Y.shape == (2, 11, 32) and torch.isfinite(Y).all()
