import torch
from torch import nn

from designs.gau import GAUBase, gau_test


class LayerNorm(GAUBase):
    """Layer normalization over the embedding dimension (Ba et al., 2016).

    Y = (X - mean(X)) / sqrt(var(X) + eps) * weight + bias, statistics per token.
    Hyperparameters: `eps` (numerical floor), `norm_bias` (learn a bias or not).
    """

    def __init__(self, embed_dim, block_loc, kwarg_all, device=None, dtype=None,
                 eps: float = 1e-5, norm_bias: bool = True, **kwargs):
        self.factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__(embed_dim, block_loc, kwarg_all)
        self.norm = nn.LayerNorm(embed_dim, eps=eps, bias=norm_bias, **self.factory_kwargs)

    def _forward(self, X, **Z):
        return self.norm(X)


@gau_test
def test_layernorm_statistics(device=None, dtype=None):
    unit = LayerNorm(16, (0, 1), {}, device=device, dtype=dtype)
    Y, _ = unit(torch.randn(2, 5, 16, device=device, dtype=dtype) * 3 + 1)
    atol = 1e-4 if Y.dtype in (torch.float32, torch.float64) else 3e-2
    assert torch.allclose(Y.float().mean(-1), torch.zeros(2, 5, device=device), atol=atol)
