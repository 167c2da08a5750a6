"""Sizing a design to a parameter target: fair comparison at a rung needs matched sizes.

`fit_config` searches (d_model, n_block) for a model whose non-embedding parameter
count is within `tolerance` of the target, preferring a width/depth ratio near
`aspect` (d_model / n_block = 64 as in GPT-2 small and most small LMs). Parameters
are counted exactly by building the model on the meta device, so any design, hybrids
whose blocks differ by layer included, sizes correctly.

Like designs.model, this runs design code: call it in a child process.
"""

from __future__ import annotations

import math
import types
from dataclasses import asdict, dataclass

from designs.model import count_params


class SizingError(ValueError):
    """No (d_model, n_block) meets the target within the tolerance."""


@dataclass(frozen=True)
class SizeConfig:
    d_model: int
    n_block: int
    non_embedding_params: int
    total_params: int
    target: int

    @property
    def error(self) -> float:
        return self.non_embedding_params / self.target - 1

    def to_dict(self) -> dict:
        return {**asdict(self), "error": self.error}


def _params(module: types.ModuleType, d: int, n: int, vocab_size: int, cache: dict) -> int | None:
    """Non-embedding parameters at (d, n), or None when the design cannot be built there."""
    if (d, n) not in cache:
        try:
            cache[d, n] = count_params(module, d, n, vocab_size)[0]
        except (ValueError, AssertionError, RuntimeError, TypeError, ZeroDivisionError):
            cache[d, n] = None
    return cache[d, n]


def _quadratic(xs: list[int], ys: list[float]) -> tuple[float, float, float]:
    """Coefficients (a, b, c) of the parabola through three points."""
    (x1, x2, x3), (y1, y2, y3) = xs, ys
    denom = (x1 - x2) * (x1 - x3) * (x2 - x3)
    a = (x3 * (y2 - y1) + x2 * (y1 - y3) + x1 * (y3 - y2)) / denom
    b = (x3 ** 2 * (y1 - y2) + x2 ** 2 * (y3 - y1) + x1 ** 2 * (y2 - y3)) / denom
    return a, b, y1 - a * x1 ** 2 - b * x1


def _solve(coeffs: tuple[float, float, float], target: int) -> float | None:
    """The positive width at which the parabola reaches target."""
    a, b, c = coeffs
    if abs(a) < 1e-12:
        return (target - c) / b if b > 0 else None
    disc = b * b - 4 * a * (c - target)
    return (-b + math.sqrt(disc)) / (2 * a) if disc >= 0 else None


def _estimates(module, target: int, vocab_size: int, step: int, depths, cache: dict):
    """(depth, estimated width) pairs from counts of 1- and 2-block models at three widths.

    Counts grow about quadratically with width and linearly with depth, so six small
    builds predict every depth; the exact counts are checked afterwards.
    """
    widths = [d for d in range(4 * step, 64 * step + 1, 4 * step)
              if _params(module, d, 1, vocab_size, cache) and _params(module, d, 2, vocab_size, cache)][:3]
    if len(widths) < 3:
        return []
    one = [cache[d, 1] for d in widths]
    two = [cache[d, 2] for d in widths]
    per_block = _quadratic(widths, [y2 - y1 for y1, y2 in zip(one, two)])
    shared = _quadratic(widths, [2 * y1 - y2 for y1, y2 in zip(one, two)])
    found = []
    for n in depths:
        coeffs = tuple(s + n * p for s, p in zip(shared, per_block))
        width = _solve(coeffs, target)
        if width and width >= step / 2:
            found.append((n, width))
    return found


def fit_config(module: types.ModuleType, target: int, *, vocab_size: int = 256, tolerance: float = 0.05,
               aspect: float = 64.0, step: int = 16, max_blocks: int = 48, max_width: int = 8192,
               n_block: int | None = None, name: str = "design") -> SizeConfig:
    """Choose (d_model, n_block) with non-embedding params within tolerance of target.

    module: a loaded design module (designs.model.load_design_module). Widths are
    multiples of `step`. Among the configurations that meet the target, the one
    with d_model / n_block closest to `aspect` wins, a parameter error counting as
    much as the log aspect mismatch times twenty (1% ~ a 22% aspect mismatch).
    """
    if target <= 0:
        raise SizingError(f"{name}: the parameter target must be positive, got {target:,}")
    cache: dict = {}
    depths = [n_block] if n_block else range(1, max_blocks + 1)
    estimates = sorted(_estimates(module, target, vocab_size, step, depths, cache),
                       key=lambda nw: abs(math.log(nw[1] / nw[0] / aspect)))
    fits = []
    for n, width in estimates[:8]:
        centre = round(width / step) * step
        for d in range(centre - 3 * step, centre + 4 * step, step):
            params = _params(module, d, n, vocab_size, cache) if step <= d <= max_width else None
            if params and abs(params / target - 1) <= tolerance:
                error = abs(params / target - 1)
                fits.append((abs(math.log(d / n / aspect)) + 20 * error, d, n))
    if not fits and step > 8:  # a pinned depth may need finer widths to land within tolerance
        return fit_config(module, target, vocab_size=vocab_size, tolerance=tolerance, aspect=aspect,
                          step=step // 2, max_blocks=max_blocks, max_width=max_width, n_block=n_block, name=name)
    if not fits:
        smallest = next(((d, p) for d in range(step, 64 * step + 1, step)
                         if (p := _params(module, d, 1, vocab_size, cache))), None)
        hint = f"; the smallest it builds (d_model={smallest[0]}, 1 block) has {smallest[1]:,}" if smallest else ""
        raise SizingError(
            f"{name}: no (d_model, n_block) gives {target:,} non-embedding parameters within "
            f"{tolerance:.0%}{hint}"
        )
    _, d, n = min(fits)
    non_emb, total = count_params(module, d, n, vocab_size)
    return SizeConfig(d, n, non_emb, total, target)
