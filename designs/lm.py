"""DesignLM: the language model that wraps a design's block.

token ids -> embedding -> n_block blocks (each a fresh root unit with its own
block_loc, Z threaded through all of them) -> final RMSNorm -> LM head tied to the
embedding. Position information is the block's business (as in the Genesys paper's
LM wrapper): the wrapper adds none.

Like designs/gau.py, this module imports only the standard library and torch, so
composed design modules can inline it.
"""

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from designs.gau import GAUBase

# Keys the LM itself passes to every root unit: a design's hyperparameters may not use them.
RESERVED_KWARGS = ("embed_dim", "block_loc", "kwarg_all", "device", "dtype")
# Linear layers whose output is added to the residual stream: GPT-2 scales their init.
RESIDUAL_PROJECTIONS = ("out_proj", "o_proj", "c_proj", "down_proj", "fc2", "proj_out")


@dataclass
class LMConfig:
    vocab_size: int = 256  # byte-level tokens by default
    d_model: int = 128  # width of the residual stream (embed_dim of every unit)
    n_block: int = 4  # number of blocks
    # Init N(0, std) of linear and embedding weights, residual projections / sqrt(2 n_block) as in
    # GPT-2. None: d_model ** -0.5 (fan-in). GPT-2's fixed 0.02 suits d_model ~ 768; at the CPU
    # ladder's widths (64-288) it leaves attention logits near zero and, measured on in-context
    # recall at d_model 64, a 2-layer transformer never forms the induction circuit in 800 steps
    # (accuracy 0.35) where the fan-in init solves it in 300-400 steps (accuracy 1.00).
    init_std: float | None = None
    norm_eps: float = 1e-5  # of the final RMSNorm


class DesignLM(nn.Module):
    def __init__(self, root_unit: type, config: LMConfig, kwarg_all: dict, device=None, dtype=None):
        super().__init__()
        clash = [k for k in RESERVED_KWARGS if k in kwarg_all]
        if clash:
            raise ValueError(f"hyperparameters may not be named {', '.join(clash)}: the LM passes those itself")
        factory = {"device": device, "dtype": dtype}
        self.config = config
        d, n = config.d_model, config.n_block
        self.embedding = nn.Embedding(config.vocab_size, d, **factory)
        self.blocks = nn.ModuleList(self._block(root_unit, i, dict(kwarg_all), factory) for i in range(n))
        self.norm_out = nn.RMSNorm(d, eps=config.norm_eps, **factory)
        self.lm_head = nn.Linear(d, config.vocab_size, bias=False, **factory)
        self.lm_head.weight = self.embedding.weight
        if torch.device(device or "cpu").type != "meta":
            self.init_weights()

    def _block(self, root_unit: type, i: int, kwarg_all: dict, factory: dict) -> nn.Module:
        """Block i, with its own copy of the hyperparameters (units may edit them while building)."""
        d, n = self.config.d_model, self.config.n_block
        return root_unit(embed_dim=d, block_loc=(i, n), kwarg_all=kwarg_all, **factory, **kwarg_all)

    def init_weights(self) -> None:
        """GPT-2 init for linear and embedding layers, then each unit's own `_init_weights`."""
        std = self.config.init_std or self.config.d_model ** -0.5
        for name, module in self.named_modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                scale = 1 / math.sqrt(2 * self.config.n_block) if name.endswith(RESIDUAL_PROJECTIONS) else 1.0
                nn.init.normal_(module.weight, mean=0.0, std=std * scale)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
        for module in self.modules():
            if isinstance(module, GAUBase) and hasattr(module, "_init_weights"):
                module._init_weights()

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """input_ids: (batch, seq) -> logits: (batch, seq, vocab_size)."""
        X = self.embedding(input_ids)
        Z: dict = {}
        for block in self.blocks:
            X, Z = block(X, **Z)
        return self.lm_head(self.norm_out(X))

    def loss(self, tokens: torch.Tensor) -> torch.Tensor:
        """Next-token cross-entropy (nats) of tokens: (batch, seq + 1)."""
        logits = self(tokens[:, :-1])
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), tokens[:, 1:].reshape(-1))

    def num_params(self, non_embedding: bool = True) -> int:
        """Unique parameters; non-embedding leaves out the (tied) embedding matrix."""
        total = sum(p.numel() for p in self.parameters())
        return total - self.embedding.weight.numel() if non_embedding else total
