"""Measuring in the sandbox: results, design errors reported per job, secrets kept out."""

import pytest

from designs.measure import MeasureError
from verifier.sandbox import clean_env, measure_isolated
from designs.seeds import load_seed

BROKEN_MLP = '''
import torch
from torch import nn

from designs.gau import GAUBase


class GeluMLP(GAUBase):
    """An MLP whose constructor fails."""

    def __init__(self, embed_dim, block_loc, kwarg_all, device=None, dtype=None, **kwargs):
        super().__init__(embed_dim, block_loc, kwarg_all)
        self.fc1 = nn.Linear(embed_dim, embed_dim)
        raise RuntimeError("width must be odd")

    def _forward(self, X, **Z):
        return self.fc1(X)
'''


def test_jobs_are_measured_and_errors_stay_per_job():
    good = load_seed("gpt2")
    broken = good.replace("GeluMLP", BROKEN_MLP)
    replies = measure_isolated([
        {"tree": good.to_dict(), "targets": [500_000], "sizes": [[64, 2]], "flops_seq_len": 32},
        {"tree": broken.to_dict(), "sizes": [[64, 2]]},
        {"tree": good.to_dict(), "targets": [10]},
    ])
    sized, fixed = replies[0]["sizes"]
    assert abs(sized["error"]) <= 0.05 and sized["flops_train_per_token"] > sized["flops_forward_per_token"] > 0
    assert (fixed["d_model"], fixed["n_block"]) == (64, 2)
    assert replies[1] == {"ok": False, "kind": "exception", "error": replies[1]["error"]}
    assert "RuntimeError: width must be odd" in replies[1]["error"] and "<design gpt2> line" in replies[1]["error"]
    assert replies[2]["kind"] == "SizingError"


def test_a_hanging_child_times_out():
    with pytest.raises(MeasureError, match="timed out"):
        measure_isolated([{"tree": load_seed("gpt2").to_dict(), "targets": [14_000_000], "flops_seq_len": 256}],
                         timeout=0.5)


def test_secrets_do_not_reach_the_child(monkeypatch):
    for key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "HF_TOKEN", "AWS_SECRET_ACCESS_KEY", "S2_API_KEY"):
        monkeypatch.setenv(key, "secret")
    monkeypatch.setenv("GENESYS_RUN_DIR", "kept")
    env = clean_env(extra={"GENESYS_RUN_DIR": "kept", "MY_API_KEY": "secret"})
    assert not any(v == "secret" for v in env.values()) and env["GENESYS_RUN_DIR"] == "kept"
