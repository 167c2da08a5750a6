import torch
from torch import nn

from designs.gau import GAUBase, gau_test


class TTTBlock(GAUBase):
    """The TTT block with the Mamba backbone (Sun et al., 2024): conv, TTT layer, SwiGLU, each pre-norm.

    X = X + Conv(RMSNorm(X))          short causal depthwise conv (`ttt_conv_size` taps, with bias)
    X = X + TTTLinear(RMSNorm(X))     the test-time-training layer (token mixer)
    Y = X + SwiGLU(RMSNorm(X))        feed-forward
    The block owns its three norms, its conv and the three residual connections. The conv
    is the Mamba backbone's temporal convolution before the TTT layer; decoding carries its
    last `ttt_conv_size - 1` inputs.
    """

    def __init__(self, embed_dim, block_loc, kwarg_all, device=None, dtype=None, ttt_conv_size: int = 4,
                 **kwargs):
        self.factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__(embed_dim, block_loc, kwarg_all)
        unit_kwargs = dict(embed_dim=self.embed_dim, block_loc=self.block_loc, kwarg_all=self.kwarg_all,
                           **self.factory_kwargs, **self.kwarg_all)
        self.conv_norm = RMSNorm(**unit_kwargs)
        self.conv = nn.Conv1d(embed_dim, embed_dim, ttt_conv_size, groups=embed_dim, padding=ttt_conv_size - 1,
                              **self.factory_kwargs)
        self.ttt_norm = RMSNorm(**unit_kwargs)
        self.ttt = TTTLinear(**unit_kwargs)
        self.ffn_norm = RMSNorm(**unit_kwargs)
        self.ffn = SwiGLU(**unit_kwargs)

    def _forward(self, X, **Z):
        H, Z = self.conv_norm(X, **Z)
        X = X + self.conv(H.transpose(1, 2))[..., :X.shape[1]].transpose(1, 2)
        H, Z = self.ttt_norm(X, **Z)
        H, Z = self.ttt(H, **Z)
        X = X + H
        H, Z = self.ffn_norm(X, **Z)
        H, Z = self.ffn(H, **Z)
        return X + H, Z


@gau_test
def test_ttt_block_shapes(device=None, dtype=None):
    block = TTTBlock(32, (0, 2), {}, device=device, dtype=dtype)
    Y, Z = block(torch.randn(2, 19, 32, device=device, dtype=dtype))
    assert Y.shape == (2, 19, 32) and torch.isfinite(Y).all()
