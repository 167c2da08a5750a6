import torch
from torch import nn

from designs.gau import GAUBase, gau_test


class ConvMixer(GAUBase):
    """A token mixer behind a short causal depthwise convolution: Y = InnerMixer(X + conv_k(X)).

    Every channel is filtered on its own over the current token and the `short_conv_size` - 1
    tokens before it (left padding only, so no future token is read), in a residual, and the
    mixer receives tokens that already carry their predecessors. Short convolutions give a
    mixer cheap local context (n-gram features, the previous-token shift that induction heads
    need) that recurrent and linear-attention mixers otherwise learn through their state:
    H3's shift SSM, Primer's depthwise convolutions, the convolutions of Mamba and DeltaNet.
    About (k + 1) embed_dim parameters besides the mixer's.
    Hyperparameters: `short_conv_size` (k, 4).
    """

    def __init__(self, embed_dim, block_loc, kwarg_all, device=None, dtype=None, short_conv_size: int = 4,
                 **kwargs):
        self.factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__(embed_dim, block_loc, kwarg_all)
        unit_kwargs = dict(embed_dim=self.embed_dim, block_loc=self.block_loc, kwarg_all=self.kwarg_all,
                           **self.factory_kwargs, **self.kwarg_all)
        self.conv = nn.Conv1d(embed_dim, embed_dim, short_conv_size, groups=embed_dim,
                              padding=short_conv_size - 1, **self.factory_kwargs)
        self.mixer = InnerMixer(**unit_kwargs)

    def _forward(self, X, **Z):
        Y, Z = self.mixer(conv_mixer_short_conv(self.conv, X), **Z)
        return Y, Z


def conv_mixer_short_conv(conv, X):
    """The convolution step alone: X + conv_k(X), cut to X's length (causal)."""
    T = X.shape[1]
    return X + conv(X.transpose(1, 2))[..., :T].transpose(1, 2)


@gau_test
def test_conv_mixer_conv_is_causal(device=None, dtype=None):
    conv = nn.Conv1d(16, 16, 3, groups=16, padding=2, device=device, dtype=dtype)
    X = torch.randn(2, 9, 16, device=device, dtype=dtype)
    X2 = X.clone()
    X2[:, 6:] = torch.randn_like(X2[:, 6:])
    Y, Y2 = conv_mixer_short_conv(conv, X), conv_mixer_short_conv(conv, X2)
    assert torch.allclose(Y[:, :6], Y2[:, :6], atol=1e-5) and not torch.allclose(Y[:, 6:], Y2[:, 6:])
