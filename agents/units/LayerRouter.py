from designs.gau import GAUBase


class LayerRouter(GAUBase):
    """Interleaves two token mixers across depth: layer i uses MixerB when (i + 1) % router_every == 0, else MixerA.

    The layer index comes from block_loc = (layer_idx, n_block), so each block of the
    stack builds only the mixer it uses (a hybrid stack in the manner of Samba, Jamba and
    Griffin: recurrent layers compress the distant past, the others complement them).
    With router_every = 2 the stack alternates A, B, A, B; with 3 it runs A, A, B, ...
    Hyperparameters: `router_every` (2; 0 keeps MixerA everywhere).
    """

    def __init__(self, embed_dim, block_loc, kwarg_all, device=None, dtype=None, router_every: int = 2,
                 **kwargs):
        self.factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__(embed_dim, block_loc, kwarg_all)
        unit_kwargs = dict(embed_dim=self.embed_dim, block_loc=self.block_loc, kwarg_all=self.kwarg_all,
                           **self.factory_kwargs, **self.kwarg_all)
        self.uses_b = router_every > 0 and (self.block_loc[0] + 1) % router_every == 0
        if self.uses_b:
            self.mixer = MixerB(**unit_kwargs)
        else:
            self.mixer = MixerA(**unit_kwargs)

    def _forward(self, X, **Z):
        Y, Z = self.mixer(X, **Z)
        return Y, Z
