from designs.gau import GAUBase


class ConvMixer(GAUBase):
    """A token mixer behind a short causal convolution: Y = InnerMixer(ShortConv(X)).

    The convolution hands the mixer tokens that already carry their few predecessors, so
    the mixer's queries and keys can match on local patterns. The unit owns no parameters
    of its own; the mixer and the convolution read their own hyperparameters.
    """

    def __init__(self, embed_dim, block_loc, kwarg_all, device=None, dtype=None, **kwargs):
        self.factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__(embed_dim, block_loc, kwarg_all)
        unit_kwargs = dict(embed_dim=self.embed_dim, block_loc=self.block_loc, kwarg_all=self.kwarg_all,
                           **self.factory_kwargs, **self.kwarg_all)
        self.conv = ShortConv(**unit_kwargs)
        self.mixer = InnerMixer(**unit_kwargs)

    def _forward(self, X, **Z):
        H, Z = self.conv(X, **Z)
        Y, Z = self.mixer(H, **Z)
        return Y, Z
