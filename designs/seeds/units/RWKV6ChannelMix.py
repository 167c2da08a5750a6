import torch
from torch import nn
from torch.nn import functional as F

from designs.gau import GAUBase, gau_test


class RWKV6ChannelMix(GAUBase):
    """RWKV-6 (Finch) channel mixing: token shift, squared-ReLU key, sigmoid receptance gate.

    X: (batch, seq, D), normalized by the block. With x_{t-1} the previous token (zeros
    before the first) and static per-channel interpolation weights mu_k, mu_r:
        xk = x_t + (x_{t-1} - x_t) * mu_k,      xr = x_t + (x_{t-1} - x_t) * mu_r
        Y = sigmoid(xr W_r) * (ReLU(xk W_k)^2 W_v)
    W_k: D x F, W_v: F x D (`out_proj` here: it writes to the residual stream), W_r: D x D,
    no biases. F = `rwkv6_ffn_mult` * D rounded down to a multiple of 32 (3.5 D in the paper).
    Cost per token: (2 F + D) D multiply-adds. Decoding carries the last input token (batch, D).
    Init (`_init_weights`, from the paper's code): mu_k = mu_r = 1 - (n / D)^(1 - l / L) for
    channel n in block l of L.
    """

    def __init__(self, embed_dim, block_loc, kwarg_all, device=None, dtype=None,
                 rwkv6_ffn_mult: float = 3.5, **kwargs):
        self.factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__(embed_dim, block_loc, kwarg_all)
        D = embed_dim
        hidden = max(32, int(rwkv6_ffn_mult * D) // 32 * 32)
        self.mix_k = nn.Parameter(torch.empty(D, **self.factory_kwargs))
        self.mix_r = nn.Parameter(torch.empty(D, **self.factory_kwargs))
        self.key = nn.Linear(D, hidden, bias=False, **self.factory_kwargs)
        self.receptance = nn.Linear(D, D, bias=False, **self.factory_kwargs)
        self.out_proj = nn.Linear(hidden, D, bias=False, **self.factory_kwargs)
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self):
        layer, n_layer = self.block_loc
        ramp = torch.arange(self.embed_dim, dtype=torch.float32, device=self.mix_k.device) / self.embed_dim
        mu = 1.0 - ramp ** (1.0 - layer / n_layer)
        self.mix_k.copy_(mu)
        self.mix_r.copy_(mu)

    def _forward(self, X, **Z):
        dx = F.pad(X[:, :-1], (0, 0, 1, 0)) - X  # x_{t-1} - x_t, with x_{-1} = 0
        k = torch.relu(self.key(X + dx * self.mix_k)).square()
        return torch.sigmoid(self.receptance(X + dx * self.mix_r)) * self.out_proj(k)


@gau_test
def test_rwkv6_channel_mix_sees_one_token_back(device=None, dtype=None):
    unit = RWKV6ChannelMix(32, (0, 2), {}, device=device, dtype=dtype)
    X = torch.randn(2, 6, 32, device=device, dtype=dtype)
    Y, _ = unit(X)
    Y_tail, _ = unit(X[:, 3:])  # token 4 sees tokens 3 and 4 only
    assert torch.allclose(Y[:, 4:], Y_tail[:, 1:], atol=1e-5)
    assert unit.key.out_features == 96  # 3.5 * 32 rounded down to a multiple of 32
