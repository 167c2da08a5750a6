from designs.gau import GAUBase


class PreNormBlock(GAUBase):
    """A pre-norm residual block: H = X + BlockMixer(BlockNorm(X)); Y = H + BlockFFN(BlockNorm(H)).

    The block owns its two norms (two instances of the same norm unit) and both residual
    connections; the token mixer moves information between positions, the feed-forward
    unit transforms each token on its own. It has no hyperparameters of its own.
    """

    def __init__(self, embed_dim, block_loc, kwarg_all, device=None, dtype=None, **kwargs):
        self.factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__(embed_dim, block_loc, kwarg_all)
        unit_kwargs = dict(embed_dim=self.embed_dim, block_loc=self.block_loc, kwarg_all=self.kwarg_all,
                           **self.factory_kwargs, **self.kwarg_all)
        self.mixer_norm = BlockNorm(**unit_kwargs)
        self.mixer = BlockMixer(**unit_kwargs)
        self.ffn_norm = BlockNorm(**unit_kwargs)
        self.ffn = BlockFFN(**unit_kwargs)

    def _forward(self, X, **Z):
        H, Z = self.mixer_norm(X, **Z)
        H, Z = self.mixer(H, **Z)
        X = X + H
        H, Z = self.ffn_norm(X, **Z)
        H, Z = self.ffn(H, **Z)
        return X + H, Z
