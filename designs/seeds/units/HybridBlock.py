import torch

from designs.gau import GAUBase, gau_test


class HybridBlock(GAUBase):
    """A layer of a hybrid stack: softmax attention or gated linear attention by depth, then SwiGLU.

    Layer i (block_loc[0]) mixes tokens with MHA (causal softmax attention, rotary) when
    (i + 1) % hybrid_attn_every == 0 and with GatedLinearAttention otherwise; every layer then
    has a SwiGLU. Pre-RMSNorm, residuals: H = X + Mixer_i(RMSNorm(X)); Y = H + SwiGLU(RMSNorm(H)).
    The default hybrid_attn_every = 2 alternates GLA, attention, GLA, attention, ... (layers 1,
    3, 5, ... attend), the layer-wise interleaving of Samba (Ren et al. 2024), whose "Sliding GLA"
    variant pairs GLA with attention this way: the recurrent layers compress the distant past
    into a fixed-size state, the attention layers recall recent tokens exactly.
    Both mixers hold about 4 d^2 parameters, so layers cost about the same in parameters;
    attention layers cost O(T^2) time, GLA layers O(T).
    Hyperparameters: `hybrid_attn_every` (2; 1 makes every layer attention, 0 none).
    The mixers read their own arguments (MHA: n_heads, ...; GLA: gla_heads, ...).
    """

    def __init__(self, embed_dim, block_loc, kwarg_all, device=None, dtype=None, hybrid_attn_every: int = 2,
                 **kwargs):
        self.factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__(embed_dim, block_loc, kwarg_all)
        unit_kwargs = dict(embed_dim=self.embed_dim, block_loc=self.block_loc, kwarg_all=self.kwarg_all,
                           **self.factory_kwargs, **self.kwarg_all)
        self.uses_attention = hybrid_attn_every > 0 and (self.block_loc[0] + 1) % hybrid_attn_every == 0
        self.mixer_norm = RMSNorm(**unit_kwargs)
        if self.uses_attention:
            self.mixer = MHA(**unit_kwargs)
        else:
            self.mixer = GatedLinearAttention(**unit_kwargs)
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
def test_hybrid_block_alternates(device=None, dtype=None):
    blocks = [HybridBlock(32, (i, 4), {}, device=device, dtype=dtype) for i in range(4)]
    assert [b.uses_attention for b in blocks] == [False, True, False, True]
    for block in blocks:
        Y, Z = block(torch.randn(2, 7, 32, device=device, dtype=dtype))
        assert Y.shape == (2, 7, 32) and isinstance(Z, dict)
