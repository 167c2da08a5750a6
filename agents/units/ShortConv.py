import torch
from torch import nn

from designs.gau import GAUBase, gau_test


class ShortConv(GAUBase):
    """A short causal depthwise convolution over time, in a residual: Y = X + conv_k(X).

    Every channel is filtered on its own over the current token and the `short_conv_size` - 1
    tokens before it (left padding only, so no future token is read). Short convolutions in
    front of a token mixer give it cheap local context (n-gram features, the previous-token
    shift that induction heads need) that recurrent and linear-attention mixers otherwise
    have to learn in their state: H3's shift SSM, Primer's depthwise convolutions after the
    projections, Mamba's and DeltaNet's convolutions. About (k + 1) embed_dim parameters.
    Hyperparameters: `short_conv_size` (k, 4).
    """

    def __init__(self, embed_dim, block_loc, kwarg_all, device=None, dtype=None, short_conv_size: int = 4,
                 **kwargs):
        self.factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__(embed_dim, block_loc, kwarg_all)
        self.conv = nn.Conv1d(embed_dim, embed_dim, short_conv_size, groups=embed_dim,
                              padding=short_conv_size - 1, **self.factory_kwargs)

    def _forward(self, X, **Z):
        T = X.shape[1]
        return X + self.conv(X.transpose(1, 2))[..., :T].transpose(1, 2)


@gau_test
def test_short_conv_is_causal(device=None, dtype=None):
    unit = ShortConv(16, (0, 1), {}, device=device, dtype=dtype, short_conv_size=3)
    X = torch.randn(2, 9, 16, device=device, dtype=dtype)
    X2 = X.clone()
    X2[:, 6:] = torch.randn_like(X2[:, 6:])
    Y, _ = unit(X)
    Y2, _ = unit(X2)
    assert torch.allclose(Y[:, :6], Y2[:, :6], atol=1e-5) and not torch.allclose(Y[:, 6:], Y2[:, 6:])
