import torch
from torch import nn
from torch.nn import functional as F

from designs.gau import GAUBase, gau_test


class GeluMLP(GAUBase):
    """The GPT-2 feed-forward layer: Linear(d, r*d) -> GELU (tanh form) -> Linear(r*d, d).

    Mixes channels within each token; no information moves between positions.
    Hyperparameters: `mlp_ratio` (r, hidden width over embed_dim, 4 in GPT-2),
    `mlp_bias` (biases on both linear layers).
    """

    def __init__(self, embed_dim, block_loc, kwarg_all, device=None, dtype=None,
                 mlp_ratio: float = 4.0, mlp_bias: bool = True, **kwargs):
        self.factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__(embed_dim, block_loc, kwarg_all)
        hidden = int(mlp_ratio * embed_dim)
        self.fc1 = nn.Linear(embed_dim, hidden, bias=mlp_bias, **self.factory_kwargs)
        self.fc2 = nn.Linear(hidden, embed_dim, bias=mlp_bias, **self.factory_kwargs)

    def _forward(self, X, **Z):
        return self.fc2(F.gelu(self.fc1(X), approximate="tanh"))


@gau_test
def test_gelu_mlp_is_per_token(device=None, dtype=None):
    unit = GeluMLP(16, (0, 1), {}, device=device, dtype=dtype)
    X = torch.randn(1, 4, 16, device=device, dtype=dtype)
    Y, _ = unit(X)
    Y_last, _ = unit(X[:, -1:])
    assert torch.allclose(Y[:, -1:], Y_last, atol=1e-5)
