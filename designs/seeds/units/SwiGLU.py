import torch
from torch import nn
from torch.nn import functional as F

from designs.gau import GAUBase, gau_test


class SwiGLU(GAUBase):
    """Gated feed-forward layer of PaLM and Llama (Shazeer, 2020): down(silu(gate(X)) * up(X)).

    The hidden width is ffn_mult * embed_dim (8/3 keeps the parameter count of a 4x
    GELU MLP) rounded up to a multiple of `ffn_multiple_of`. No biases.
    Hyperparameters: `ffn_mult`, `ffn_multiple_of`.
    """

    def __init__(self, embed_dim, block_loc, kwarg_all, device=None, dtype=None,
                 ffn_mult: float = 8 / 3, ffn_multiple_of: int = 16, **kwargs):
        self.factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__(embed_dim, block_loc, kwarg_all)
        hidden = -(-int(ffn_mult * embed_dim) // ffn_multiple_of) * ffn_multiple_of
        self.gate_proj = nn.Linear(embed_dim, hidden, bias=False, **self.factory_kwargs)
        self.up_proj = nn.Linear(embed_dim, hidden, bias=False, **self.factory_kwargs)
        self.down_proj = nn.Linear(hidden, embed_dim, bias=False, **self.factory_kwargs)

    def _forward(self, X, **Z):
        return self.down_proj(F.silu(self.gate_proj(X)) * self.up_proj(X))


@gau_test
def test_swiglu_hidden_width(device=None, dtype=None):
    unit = SwiGLU(48, (0, 1), {}, device=device, dtype=dtype)
    assert unit.gate_proj.out_features % 16 == 0 and unit.gate_proj.out_features >= 128
    Y, _ = unit(torch.randn(2, 3, 48, device=device, dtype=dtype))
    assert Y.shape == (2, 3, 48)
