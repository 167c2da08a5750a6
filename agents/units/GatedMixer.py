import torch
from torch import nn

from designs.gau import GAUBase


class GatedMixer(GAUBase):
    """A token mixer with an elementwise sigmoid output gate: Y = InnerMixer(X) * sigmoid(X W_g + b_g).

    The gate is computed from the mixer's own input token, per channel, so each token can
    scale down what the mixer retrieved for it (the gated units of GAU, the swish gates of
    RetNet and GLA, the output gate of gated attention). It adds embed_dim^2 + embed_dim
    parameters and one matmul per token; it cannot break causality because it reads only
    the current token. The bias starts at `output_gate_bias` so the gate opens at init.
    """

    def __init__(self, embed_dim, block_loc, kwarg_all, device=None, dtype=None, output_gate_bias: float = 1.0,
                 **kwargs):
        self.factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__(embed_dim, block_loc, kwarg_all)
        unit_kwargs = dict(embed_dim=self.embed_dim, block_loc=self.block_loc, kwarg_all=self.kwarg_all,
                           **self.factory_kwargs, **self.kwarg_all)
        self.mixer = InnerMixer(**unit_kwargs)
        self.gate_proj = nn.Linear(embed_dim, embed_dim, bias=True, **self.factory_kwargs)
        self.gate_bias_init = output_gate_bias
        self._init_weights()

    def _init_weights(self):
        # DesignLM zeroes every bias and then calls this: the gate starts mostly open.
        nn.init.constant_(self.gate_proj.bias, self.gate_bias_init)

    def _forward(self, X, **Z):
        Y, Z = self.mixer(X, **Z)
        return Y * torch.sigmoid(self.gate_proj(X)), Z
