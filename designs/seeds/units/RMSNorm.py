import torch
from torch import nn

from designs.gau import GAUBase, gau_test


class RMSNorm(GAUBase):
    """Root-mean-square normalization (Zhang and Sennrich, 2019).

    Y = X / sqrt(mean(X^2) + eps) * weight: rescales each token without centering it.
    Hyperparameters: `eps` (numerical floor).
    """

    def __init__(self, embed_dim, block_loc, kwarg_all, device=None, dtype=None, eps: float = 1e-5, **kwargs):
        self.factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__(embed_dim, block_loc, kwarg_all)
        self.norm = nn.RMSNorm(embed_dim, eps=eps, **self.factory_kwargs)

    def _forward(self, X, **Z):
        return self.norm(X)


@gau_test
def test_rmsnorm_unit_scale(device=None, dtype=None):
    unit = RMSNorm(16, (0, 1), {}, device=device, dtype=dtype)
    Y, _ = unit(torch.randn(2, 5, 16, device=device, dtype=dtype) * 7)
    rms = Y.float().pow(2).mean(-1).sqrt()
    assert torch.allclose(rms, torch.ones_like(rms), atol=1e-2)
