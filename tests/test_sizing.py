"""fit_config: every seed sizes to the ladder's small targets within 5%."""

import pytest

from designs.model import load_design_module
from designs.seeds import load_seed, seed_names
from designs.sizing import SizingError, fit_config


@pytest.fixture(scope="module", params=seed_names())
def seed_module(request):
    return request.param, load_design_module(load_seed(request.param))


@pytest.mark.parametrize("target", [500_000, 3_000_000, 14_000_000])
def test_fit_config_within_five_percent(seed_module, target):
    name, module = seed_module
    cfg = fit_config(module, target, name=name)
    assert abs(cfg.error) <= 0.05
    assert cfg.non_embedding_params == module.build_model(cfg.d_model, cfg.n_block, device="meta").num_params()
    assert 16 <= cfg.d_model / cfg.n_block <= 256  # a sensible shape, not a 1-block giant


def test_fixed_depth(seed_module):
    name, module = seed_module
    cfg = fit_config(module, 3_000_000, n_block=6, name=name)
    assert cfg.n_block == 6 and abs(cfg.error) <= 0.05


def test_impossible_targets_say_why(seed_module):
    name, module = seed_module
    with pytest.raises(SizingError, match=rf"{name}: no \(d_model, n_block\) gives 10 non-embedding .* smallest it builds"):
        fit_config(module, 10, name=name)
    with pytest.raises(SizingError, match="must be positive"):
        fit_config(module, 0, name=name)
