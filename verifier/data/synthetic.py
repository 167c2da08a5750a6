"""Synthetic capability tasks: the MAD suite and multi-query associative recall.

Seven token-manipulation tasks, each a small, exactly solvable probe of one skill a
language-model block needs. Six come from MAD (Poli et al. 2024, "Mechanistic Design
and Scaling of Hybrid Architectures", arXiv 2403.17844: the synthetic task suite of
its Section 3 and the task settings of its appendix; the published settings were
cross-checked against the task configs the authors released with the paper) and one
from Zoology (Arora et al. 2023, "Zoology: Measuring and Improving Recall in Efficient
Language Models", arXiv 2312.04927: the definition of multi-query associative recall
and the setup of its Figure 2). The generators here are our own; only the task
definitions and sizes are taken from the papers.

Alignment (all tasks)
---------------------
``inputs`` and ``targets`` are ``(N, T)`` int64 tensors. A causal model reads
``inputs[:, :t+1]`` and is scored on ``targets[:, t]``: ``targets[t]`` is the token the
model should emit after reading ``inputs[t]`` (the next token). Positions that do not
test the skill hold ``IGNORE`` (-100), the default ``ignore_index`` of
``torch.nn.functional.cross_entropy``; train on and score only the other positions
(``accuracy`` does the latter). Every sequence has at least one scored position.
For the recall tasks the answer is also the next input token (``inputs[t+1]`` ==
``targets[t]`` wherever ``targets[t]`` is set); for selective copying, memorization,
compression and MQAR the answer is never shown in the inputs (the next input is a
placeholder or the next query), exactly as in the papers, so a model cannot copy it
from its own input. Every token id, special tokens included, is below
``config.vocab_size``.

Tasks and token layout (V = vocab_size, T = seq_len)
----------------------------------------------------
``in_context_recall`` (MAD, multi-query variant). Keys are ``[0, V//2)``, values
``[V//2, V)``. Each sequence draws its own key->value table (a uniform value per key;
the table changes from sequence to sequence) and is a run of ``key value`` pairs with
keys drawn uniformly. Scored: at every key that already occurred earlier in the
sequence, the value it was paired with. MAD paper: V=16, T=128.

``fuzzy_recall`` (MAD fuzzy in-context recall). Keys and values are motifs of
several adjacent tokens: a key is 1..``key_motif`` distinct tokens from ``[0, V//2)``,
a value 1..``value_motif`` distinct tokens from ``[V//2, V)``. Each sequence draws a
pool of ``num_pairs`` keys, each paired with a random value motif, and is a run of
pairs drawn uniformly from that pool. Scored: every token of the value of a pair whose
key already occurred, i.e. at the key's last token the value's first token, and then
each next value token. So that this is decidable causally, the pool of keys of one
sequence is prefix-free (no key is a proper prefix of another): when the tokens read
so far form a known key, that key is complete. MAD paper: V=16, T=128, motifs of up
to 3 tokens. ``num_pairs`` is ours (MAD draws a fresh key for every pair); the paper
preset uses 8, as many as there are key tokens.

``noisy_recall`` (MAD noisy in-context recall). As ``in_context_recall`` with keys and
values from the first ``V - noise_vocab_size`` ids, and noise tokens from the last
``noise_vocab_size`` ids inserted between the pairs, never inside one: the sequence
is a run of units, each a single noise token or a key-value pair, a unit being noise
with probability ``2f / (1 + f)`` so that the expected fraction of noise tokens is
``f = frac_noise``. Scored as in-context recall. MAD paper: V=32 of which 16 noise,
T=128, 20% noise.

``selective_copying`` (MAD). Content tokens are ``[0, V-2)``, ``BLANK = V-2``,
``COPY = V-1``. The first ``T - m`` inputs (``m = num_tokens_to_copy``) hold ``m``
content tokens at random positions among blanks; then ``COPY``, then ``m - 1`` blanks.
Scored: at ``COPY`` the first content token, at the k-th blank after it the (k+1)-th,
so the content must be reproduced in order of occurrence, without teacher forcing
(the inputs after ``COPY`` are blanks, as in MAD). MAD paper: V=16, T=256, 16 tokens.

``memorization`` (MAD). Keys are ``[0, K)`` with ``K = (V-1)//2``, values
``[K, V-1)``, ``INSERT = V-1``. One fixed key->value map (a random injection,
derived from the seed only, shared by train and test) holds for the whole data set,
so it must be stored in the weights. Inputs are ``key INSERT key INSERT ...`` (keys
drawn uniformly); scored: at each ``INSERT``, the value of the key before it. Values
never appear in the inputs. MAD paper: V=256, T=32, 256 training sequences. (On the
larger vocabularies of MAD's grid, 256 training sequences, i.e. 4,096 key draws, miss
some keys, about 37% of them at V=8192; test keys never seen in training cannot be
answered, as in MAD, whose test set is drawn the same way.)

``compression`` (MAD, reformulated for a causal model). Content tokens are
``[0, C)`` with ``C = V - 1 - L`` (``L = content_len``), ``COMPRESS = C``, and a
position token ``C + 1 + p`` for each position ``p < L``. Inputs are ``L`` random
content tokens, ``COMPRESS``, then ``Q = T - L - 1`` position queries (distinct, in
random order when ``Q <= L``, else drawn with replacement). Scored: at each query, the
content token at the queried position. MAD trains an autoencoder to rebuild the whole
sequence from the single compression token; a causal model has no such bottleneck by
construction, so here the skill is retaining the sequence past ``COMPRESS`` and
reconstructing any position of it on request: a fixed-state model must compress the
sequence into its state. The paper preset keeps MAD's content (31 tokens over 15
content ids, the 32nd MAD token being the compression token) and queries every
position once: V = 15 + 1 + 31 = 47, T = 31 + 1 + 31 = 63.

``mqar`` (Zoology multi-query associative recall). Keys are ``[1, V//2)``, values
``[V//2, V)``, ``0`` is filler. The first ``2k`` inputs (``k = num_pairs``) are ``k``
pairs with distinct keys and distinct values. The rest holds each key once as a query,
at even offsets from the end of the pairs, the gaps drawn without replacement from a
power law ``p(g) ~ a * (g + 1)^(a - 1)`` (``a = power_a``: short gaps are likely);
other positions are filler (0, or uniform random tokens with ``random_fill``). Scored:
at each query, its value (not shown in the inputs). Zoology Figure 2: V=8192,
(T, k) in (64, 4), (128, 8), (256, 16), (512, 64), 100,000 training and 3,000 test
sequences, a=0.01, filler 0; ``paper`` is the (256, 16) point and ``paper_grid("mqar")``
gives all four.

Presets and grids
-----------------
``task_config(name, "quick")`` is sized for CPU (small vocabularies, T of 32 to 64,
2,048 training and 256 test sequences; memorization 512/256); ``"paper"`` is the
published baseline (MAD: 12,800 training and 1,280 test sequences per task, except
memorization with 256 training sequences). ``paper_grid(name)`` lists the published
difficulty grid: for the MAD tasks the baseline followed by each single-variable change
of the MAD protocol (vocabulary, length, training-set size, noise or copy count); for
MQAR the four Figure-2 points.

Determinism
-----------
``generate(config, split, seed)`` draws from numpy's PCG64 seeded by
``SeedSequence([seed, split, task])``: train and test use different streams, and the
same (config, split, seed) gives identical tensors on any machine (the generators use
only integer and uniform draws, sorting and integer arithmetic; MQAR's power-law gap
sampling also takes logarithms of uniforms, whose last-bit differences between math
libraries could only matter on an exact tie; rows are built in chunks whose size is a
fixed function of ``seq_len``). ``TaskConfig.fingerprint()`` identifies
a configuration; together with the seed and split it identifies a data set.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import torch

__all__ = [
    "IGNORE",
    "PRESETS",
    "SPLITS",
    "TASKS",
    "TaskConfig",
    "TaskData",
    "TaskSpec",
    "accuracy",
    "chance_accuracy",
    "generate",
    "memorization_map",
    "paper_grid",
    "suite",
    "task_config",
]

IGNORE = -100
SPLITS = ("train", "test")
PRESETS = ("quick", "paper")

_COMMON = ("vocab_size", "seq_len", "n_train", "n_test")
_SPLIT_TAG = {"train": 1, "test": 2}
_MAP_TAG = 3
_MAX_REDRAWS = 200
_CHUNK_TOKENS = 1 << 21


# -- configuration ------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskConfig:
    """One task setting. Fields a task does not use stay at their defaults.

    ``num_pairs``: MQAR key-value pairs per sequence; fuzzy recall keys per sequence.
    ``key_motif`` / ``value_motif``: fuzzy recall, most tokens in a key / value.
    ``noise_vocab_size`` / ``frac_noise``: noisy recall, noise ids and noise fraction.
    ``num_tokens_to_copy``: selective copying. ``content_len``: compression.
    ``power_a`` / ``random_fill``: MQAR query-gap power law and filler kind.
    """

    name: str
    vocab_size: int
    seq_len: int
    n_train: int
    n_test: int
    num_pairs: int = 0
    key_motif: int = 0
    value_motif: int = 0
    noise_vocab_size: int = 0
    frac_noise: float = 0.0
    num_tokens_to_copy: int = 0
    content_len: int = 0
    power_a: float = 0.0
    random_fill: bool = False

    def __post_init__(self) -> None:
        # Normalise types so that equal settings always have equal fingerprints
        # (an int 0 and a float 0.0 would serialise differently).
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type in ("str", str):
                if not isinstance(value, str):
                    raise ValueError(f"TaskConfig.{f.name} must be a string, got {value!r}")
            elif f.type in ("bool", bool):
                if not isinstance(value, (bool, np.bool_)):
                    raise ValueError(f"TaskConfig.{f.name} must be a bool, got {value!r}")
                object.__setattr__(self, f.name, bool(value))
            elif f.type in ("int", int):
                if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
                    raise ValueError(f"TaskConfig.{f.name} must be an integer, got {value!r}")
                object.__setattr__(self, f.name, int(value))
            elif f.type in ("float", float):
                if isinstance(value, (bool, np.bool_)) or not isinstance(
                    value, (int, float, np.integer, np.floating)
                ):
                    raise ValueError(f"TaskConfig.{f.name} must be a number, got {value!r}")
                if not math.isfinite(float(value)):
                    raise ValueError(f"TaskConfig.{f.name} must be finite, got {value!r}")
                object.__setattr__(self, f.name, float(value))

    def fingerprint(self) -> str:
        """First 16 hex digits of the SHA-256 of the fields as sorted JSON."""
        payload = json.dumps(dataclasses.asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]

    def n_examples(self, split: str) -> int:
        _check_split(split)
        return self.n_train if split == "train" else self.n_test

    def validate(self) -> None:
        """Raise ValueError when the setting is not a valid instance of its task."""
        _spec(self.name).validate(self)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class TaskData:
    """A generated split. ``targets`` hold ``IGNORE`` where the skill is not tested."""

    config: TaskConfig
    inputs: torch.Tensor
    targets: torch.Tensor
    split: str = "train"
    seed: int = 0

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    @property
    def n_scored(self) -> int:
        """Number of scored (non-IGNORE) positions."""
        return int((self.targets != IGNORE).sum())


@dataclass(frozen=True)
class TaskSpec:
    """A task of the suite: what it tests, where it comes from, its presets, its builder."""

    name: str
    summary: str
    source: str
    fields: tuple[str, ...]
    presets: Mapping[str, Mapping[str, object]]
    build: Callable[[TaskConfig, np.random.Generator, int, int], tuple[np.ndarray, np.ndarray]]
    check: Callable[[TaskConfig], None]
    answers: Callable[[TaskConfig], int]

    @property
    def settable(self) -> tuple[str, ...]:
        """Fields that ``task_config`` accepts as overrides for this task."""
        return _COMMON + self.fields

    def validate(self, cfg: TaskConfig) -> None:
        if cfg.name != self.name:
            raise ValueError(f"config for {cfg.name!r} given to task {self.name!r}")
        for key in _COMMON:
            if getattr(cfg, key) < 1:
                raise ValueError(f"{self.name}: {key} must be >= 1, got {getattr(cfg, key)}")
        defaults = {f.name: f.default for f in dataclasses.fields(TaskConfig) if f.name not in _COMMON}
        for key, default in defaults.items():
            if key != "name" and key not in self.fields and getattr(cfg, key) != default:
                raise ValueError(
                    f"{self.name} does not use {key} (got {getattr(cfg, key)!r}); "
                    f"its fields are: {', '.join(self.settable)}"
                )
        self.check(cfg)


def _need(cond: bool, cfg: TaskConfig, message: str) -> None:
    if not cond:
        raise ValueError(f"{cfg.name}: {message}")


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")


# -- shared helpers -----------------------------------------------------------------------


def _task_tag(name: str) -> int:
    return zlib.crc32(name.encode("utf-8"))


def _rng(seed: int, *tags: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, *tags])))


def _random_order(rng: np.random.Generator, rows: int, n: int) -> np.ndarray:
    """A uniform random permutation of range(n) per row, shape (rows, n)."""
    return np.argsort(rng.random((rows, n)), axis=1, kind="stable")


def _distinct_small(rng: np.random.Generator, shape: tuple[int, ...], k: int, n: int) -> np.ndarray:
    """Uniform ordered draws of ``k`` distinct ids from ``range(n)``, shape ``shape + (k,)``.

    The j-th id is drawn among the ``n - j`` ids not taken yet: a uniform ``r`` is
    mapped to the r-th free id by stepping over the taken ones in ascending order.
    """
    out = np.zeros(shape + (k,), dtype=np.int64)
    for j in range(k):
        r = rng.integers(0, n - j, size=shape)
        taken = np.sort(out[..., :j], axis=-1)
        for i in range(j):
            r = r + (r >= taken[..., i])
        out[..., j] = r
    return out


def _distinct_rows(rng: np.random.Generator, rows: int, k: int, lo: int, hi: int) -> np.ndarray:
    """Per row, ``k`` distinct ids from ``[lo, hi)`` in uniform random order."""
    span = hi - lo
    if 4 * k > span or rows * span <= (1 << 21):
        out = np.empty((rows, k), dtype=np.int64)
        step = max(1, (1 << 22) // span)
        for start in range(0, rows, step):
            m = min(step, rows - start)
            out[start : start + m] = _random_order(rng, m, span)[:, :k]
        return out + lo
    # Large id range, few ids: draw with replacement and redraw rows with a repeat.
    out = rng.integers(lo, hi, size=(rows, k))
    while True:
        ordered = np.sort(out, axis=1)
        bad = np.flatnonzero((ordered[:, 1:] == ordered[:, :-1]).any(axis=1))
        if bad.size == 0:
            return out
        out[bad] = rng.integers(lo, hi, size=(bad.size, k))


def _compact(keep: np.ndarray, length: int, *arrays: np.ndarray) -> list[np.ndarray]:
    """Per row, the first ``length`` entries of each array where ``keep`` is true."""
    assert (keep.sum(axis=1) >= length).all()
    order = np.argsort(~keep, axis=1, kind="stable")[:, :length]
    return [np.take_along_axis(a, order, axis=1) for a in arrays]


def _from_stream(stream: np.ndarray, scored: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, T+1) token stream and scored flags -> next-token inputs and targets."""
    inputs = stream[:, :-1]
    targets = np.where(scored[:, 1:], stream[:, 1:], IGNORE)
    return inputs, targets


# -- in-context recall and noisy in-context recall -----------------------------------------


def _recall_layout(cfg: TaskConfig) -> tuple[int, int]:
    """(number of keys, end of the value ids); noise ids are [end, V)."""
    kv = cfg.vocab_size - cfg.noise_vocab_size
    return kv // 2, kv


def _build_recall(cfg: TaskConfig, rng: np.random.Generator, n: int, seed: int):
    T, V = cfg.seq_len, cfg.vocab_size
    n_keys, kv_end = _recall_layout(cfg)
    units = T + 1  # every unit has at least one token, so T+1 units always suffice
    f = cfg.frac_noise
    noise = rng.random((n, units)) < (2 * f / (1 + f)) if f > 0 else np.zeros((n, units), bool)
    keys = rng.integers(0, n_keys, size=(n, units))
    table = rng.integers(n_keys, kv_end, size=(n, n_keys))  # this sequence's key -> value
    values = np.take_along_axis(table, keys, axis=1)
    noise_tok = rng.integers(kv_end, V, size=(n, units)) if f > 0 else keys
    rows = np.arange(n)
    seen = np.zeros((n, n_keys), dtype=bool)
    repeat = np.zeros((n, units), dtype=bool)
    for u in range(units):
        real = ~noise[:, u]
        repeat[:, u] = seen[rows, keys[:, u]] & real
        seen[rows, keys[:, u]] |= real
    # Each unit as two slots: (key or noise, value); a noise unit keeps only slot 0.
    tokens = np.stack([np.where(noise, noise_tok, keys), values], axis=2).reshape(n, 2 * units)
    keep = np.stack([np.ones_like(noise), ~noise], axis=2).reshape(n, 2 * units)
    scored = np.stack([np.zeros_like(repeat), repeat], axis=2).reshape(n, 2 * units)
    stream, flags = _compact(keep, T + 1, tokens, scored)
    return _from_stream(stream, flags)


def _check_recall(cfg: TaskConfig) -> None:
    _need(cfg.seq_len >= 4, cfg, f"seq_len must be >= 4, got {cfg.seq_len}")
    kv = cfg.vocab_size - cfg.noise_vocab_size
    _need(kv >= 4, cfg, f"need at least 4 key/value ids (vocab_size - noise_vocab_size), got {kv}")


def _check_noisy(cfg: TaskConfig) -> None:
    _check_recall(cfg)
    _need(0.0 <= cfg.frac_noise < 1.0, cfg, f"frac_noise must be in [0, 1), got {cfg.frac_noise}")
    _need(cfg.noise_vocab_size >= 1, cfg, "noise_vocab_size must be >= 1")


def _recall_answers(cfg: TaskConfig) -> int:
    n_keys, kv_end = _recall_layout(cfg)
    return kv_end - n_keys


# -- fuzzy in-context recall ----------------------------------------------------------------


def _build_fuzzy(cfg: TaskConfig, rng: np.random.Generator, n: int, seed: int):
    T, V, P = cfg.seq_len, cfg.vocab_size, cfg.num_pairs
    km, vm = cfg.key_motif, cfg.value_motif
    n_keys = V // 2
    n_vals = V - n_keys

    # A prefix-free pool of P keys per row, picked greedily from 4P random candidates.
    cands = 4 * P
    klen = rng.integers(1, km + 1, size=(n, cands))
    ktok = _distinct_small(rng, (n, cands), km, n_keys)
    kpos = np.arange(km) < klen[..., None]  # (n, cands, km)
    same = ktok[:, :, None, :] == ktok[:, None, :, :]  # (n, i, j, km)
    # prefix[i, j]: candidate i equals the first len(i) tokens of candidate j
    prefix = np.all(same | ~kpos[:, :, None, :], axis=3) & (klen[:, :, None] <= klen[:, None, :])
    clash = prefix | prefix.transpose(0, 2, 1)
    chosen = np.zeros((n, cands), dtype=bool)
    count = np.zeros(n, dtype=np.int64)
    for c in range(cands):
        take = ~(clash[:, c, :] & chosen).any(axis=1) & (count < P)
        chosen[:, c] = take
        count += take
    complete = count == P  # rows without a full pool are redrawn (targets left empty)
    pick = np.argsort(~chosen, axis=1, kind="stable")[:, :P]
    pool_klen = np.take_along_axis(klen, pick, axis=1)
    pool_ktok = np.take_along_axis(ktok, pick[..., None], axis=1)
    pool_vlen = rng.integers(1, vm + 1, size=(n, P))
    pool_vtok = _distinct_small(rng, (n, P), vm, n_vals) + n_keys

    # Pairs drawn from the pool; each pair has >= 2 tokens, so T//2 + 1 pairs suffice.
    M = T // 2 + 1
    idx = rng.integers(0, P, size=(n, M))
    rows = np.arange(n)
    seen = np.zeros((n, P), dtype=bool)
    repeat = np.zeros((n, M), dtype=bool)
    for j in range(M):
        repeat[:, j] = seen[rows, idx[:, j]]
        seen[rows, idx[:, j]] = True
    r2 = rows[:, None]
    k_len, v_len = pool_klen[r2, idx], pool_vlen[r2, idx]  # (n, M)
    k_tok, v_tok = pool_ktok[r2, idx], pool_vtok[r2, idx]  # (n, M, km|vm)
    k_keep = np.arange(km) < k_len[..., None]
    v_keep = np.arange(vm) < v_len[..., None]
    tokens = np.concatenate([k_tok, v_tok], axis=2).reshape(n, -1)
    keep = np.concatenate([k_keep, v_keep], axis=2).reshape(n, -1)
    scored = np.concatenate([np.zeros_like(k_keep), v_keep & repeat[..., None]], axis=2).reshape(n, -1)
    scored[~complete] = False
    stream, flags = _compact(keep, T + 1, tokens, scored)
    return _from_stream(stream, flags)


def _check_fuzzy(cfg: TaskConfig) -> None:
    _need(cfg.seq_len >= 4, cfg, f"seq_len must be >= 4, got {cfg.seq_len}")
    _need(cfg.vocab_size >= 4, cfg, f"vocab_size must be >= 4, got {cfg.vocab_size}")
    n_keys, n_vals = cfg.vocab_size // 2, cfg.vocab_size - cfg.vocab_size // 2
    _need(1 <= cfg.key_motif <= n_keys, cfg, f"key_motif must be in [1, {n_keys}], got {cfg.key_motif}")
    _need(1 <= cfg.value_motif <= n_vals, cfg, f"value_motif must be in [1, {n_vals}], got {cfg.value_motif}")
    _need(2 <= cfg.num_pairs <= n_keys, cfg, f"num_pairs must be in [2, {n_keys}], got {cfg.num_pairs}")


def _fuzzy_answers(cfg: TaskConfig) -> int:
    return cfg.vocab_size - cfg.vocab_size // 2


# -- selective copying ------------------------------------------------------------------------


def _build_copying(cfg: TaskConfig, rng: np.random.Generator, n: int, seed: int):
    T, V, m = cfg.seq_len, cfg.vocab_size, cfg.num_tokens_to_copy
    blank, copy = V - 2, V - 1
    region = T - m
    content = rng.integers(0, V - 2, size=(n, m))
    where = np.sort(_random_order(rng, n, region)[:, :m], axis=1)
    inputs = np.full((n, T), blank, dtype=np.int64)
    np.put_along_axis(inputs, where, content, axis=1)
    inputs[:, region] = copy
    targets = np.full((n, T), IGNORE, dtype=np.int64)
    targets[:, region:] = content
    return inputs, targets


def _check_copying(cfg: TaskConfig) -> None:
    _need(cfg.vocab_size >= 4, cfg, f"vocab_size must be >= 4 (2 specials), got {cfg.vocab_size}")
    m = cfg.num_tokens_to_copy
    _need(m >= 1, cfg, "num_tokens_to_copy must be >= 1")
    _need(cfg.seq_len > 2 * m, cfg, f"seq_len must be > 2 * num_tokens_to_copy = {2 * m}, got {cfg.seq_len}")


# -- memorization -----------------------------------------------------------------------------


def _memo_keys(cfg: TaskConfig) -> int:
    return (cfg.vocab_size - 1) // 2


def memorization_map(config: TaskConfig, seed: int = 0) -> np.ndarray:
    """The fixed key -> value map of ``memorization``: ``map[key]`` is the value id.

    Derived from the seed (and the vocabulary size) only, so train and test share it.
    """
    _spec("memorization").validate(config)
    _check_seed(seed)
    K = _memo_keys(config)
    n_vals = config.vocab_size - 1 - K
    rng = _rng(seed, _MAP_TAG, _task_tag("memorization"))
    return K + _random_order(rng, 1, n_vals)[0, :K]


def _build_memorization(cfg: TaskConfig, rng: np.random.Generator, n: int, seed: int):
    T, V = cfg.seq_len, cfg.vocab_size
    table = memorization_map(cfg, seed)
    keys = rng.integers(0, _memo_keys(cfg), size=(n, T // 2))
    inputs = np.full((n, T), V - 1, dtype=np.int64)
    inputs[:, 0::2] = keys
    targets = np.full((n, T), IGNORE, dtype=np.int64)
    targets[:, 1::2] = table[keys]
    return inputs, targets


def _check_memorization(cfg: TaskConfig) -> None:
    _need(cfg.vocab_size >= 5, cfg, f"vocab_size must be >= 5, got {cfg.vocab_size}")
    _need(cfg.seq_len >= 2 and cfg.seq_len % 2 == 0, cfg, f"seq_len must be even and >= 2, got {cfg.seq_len}")


# -- compression --------------------------------------------------------------------------------


def _compression_layout(cfg: TaskConfig) -> tuple[int, int, int]:
    """(content ids C, content length L, number of queries Q)."""
    L = cfg.content_len
    return cfg.vocab_size - 1 - L, L, cfg.seq_len - L - 1


def _build_compression(cfg: TaskConfig, rng: np.random.Generator, n: int, seed: int):
    C, L, Q = _compression_layout(cfg)
    content = rng.integers(0, C, size=(n, L))
    if Q <= L:
        queries = _random_order(rng, n, L)[:, :Q]
    else:
        queries = rng.integers(0, L, size=(n, Q))
    inputs = np.concatenate([content, np.full((n, 1), C, dtype=np.int64), C + 1 + queries], axis=1)
    targets = np.full(inputs.shape, IGNORE, dtype=np.int64)
    targets[:, L + 1 :] = np.take_along_axis(content, queries, axis=1)
    return inputs, targets


def _check_compression(cfg: TaskConfig) -> None:
    C, L, Q = _compression_layout(cfg)
    _need(L >= 1, cfg, "content_len must be >= 1")
    _need(C >= 2, cfg, f"vocab_size must be >= content_len + 3 (>= 2 content ids), got {cfg.vocab_size}")
    _need(Q >= 1, cfg, f"seq_len must be >= content_len + 2 (>= 1 query), got {cfg.seq_len}")


# -- multi-query associative recall ---------------------------------------------------------------


def _build_mqar(cfg: TaskConfig, rng: np.random.Generator, n: int, seed: int):
    T, V, k, a = cfg.seq_len, cfg.vocab_size, cfg.num_pairs, cfg.power_a
    half = V // 2
    keys = _distinct_rows(rng, n, k, 1, half)
    values = _distinct_rows(rng, n, k, half, V)
    space = (T - 2 * k) // 2
    # Power-law gaps without replacement: the Gumbel-top-k trick (sorting log-weights
    # plus Gumbel noise) is the same as drawing one gap after another proportionally
    # to the weights; the j-th key gets the j-th drawn gap.
    log_w = math.log(a) + (a - 1.0) * np.log(np.arange(1, space + 1, dtype=np.float64))
    u = rng.random((n, space))
    with np.errstate(divide="ignore"):
        gumbel = -np.log(-np.log(u))
    gaps = np.argsort(-(log_w + gumbel), axis=1, kind="stable")[:, :k]
    if cfg.random_fill:
        inputs = rng.integers(0, V, size=(n, T))
    else:
        inputs = np.zeros((n, T), dtype=np.int64)
    inputs[:, 0 : 2 * k : 2] = keys
    inputs[:, 1 : 2 * k : 2] = values
    where = 2 * k + 2 * gaps
    np.put_along_axis(inputs, where, keys, axis=1)
    targets = np.full((n, T), IGNORE, dtype=np.int64)
    np.put_along_axis(targets, where, values, axis=1)
    return inputs, targets


def _check_mqar(cfg: TaskConfig) -> None:
    V, k = cfg.vocab_size, cfg.num_pairs
    _need(V >= 6, cfg, f"vocab_size must be >= 6, got {V}")
    _need(1 <= k <= V // 2 - 1, cfg, f"num_pairs must be in [1, {V // 2 - 1}] for vocab_size {V}, got {k}")
    _need(4 * k <= cfg.seq_len, cfg, f"seq_len must be >= 4 * num_pairs = {4 * k}, got {cfg.seq_len}")
    _need(0.0 < cfg.power_a <= 1.0, cfg, f"power_a must be in (0, 1], got {cfg.power_a}")


# -- registry ------------------------------------------------------------------------------------


def _sizes(vocab: int, seq: int, n_train: int, n_test: int, **extra: object) -> Mapping[str, object]:
    return MappingProxyType(dict(vocab_size=vocab, seq_len=seq, n_train=n_train, n_test=n_test, **extra))


_MAD = "MAD (Poli et al. 2024, arXiv 2403.17844), synthetic task suite (Sec. 3) and task settings (appendix)"
_ZOOLOGY = "Zoology (Arora et al. 2023, arXiv 2312.04927), multi-query associative recall; Figure 2 setup"

TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec(
            name="in_context_recall",
            summary="recall the value paired with a repeated key (per-sequence key->value table)",
            source=_MAD,
            fields=(),
            presets=MappingProxyType(
                {"quick": _sizes(16, 32, 2048, 256), "paper": _sizes(16, 128, 12_800, 1_280)}
            ),
            build=_build_recall,
            check=_check_recall,
            answers=_recall_answers,
        ),
        TaskSpec(
            name="fuzzy_recall",
            summary="in-context recall with keys and values of several adjacent tokens",
            source=_MAD,
            fields=("num_pairs", "key_motif", "value_motif"),
            presets=MappingProxyType(
                {
                    "quick": _sizes(16, 48, 2048, 256, num_pairs=6, key_motif=2, value_motif=2),
                    "paper": _sizes(16, 128, 12_800, 1_280, num_pairs=8, key_motif=3, value_motif=3),
                }
            ),
            build=_build_fuzzy,
            check=_check_fuzzy,
            answers=_fuzzy_answers,
        ),
        TaskSpec(
            name="noisy_recall",
            summary="in-context recall with noise tokens from a separate vocabulary between pairs",
            source=_MAD,
            fields=("noise_vocab_size", "frac_noise"),
            presets=MappingProxyType(
                {
                    "quick": _sizes(32, 48, 2048, 256, noise_vocab_size=16, frac_noise=0.2),
                    "paper": _sizes(32, 128, 12_800, 1_280, noise_vocab_size=16, frac_noise=0.2),
                }
            ),
            build=_build_recall,
            check=_check_noisy,
            answers=_recall_answers,
        ),
        TaskSpec(
            name="selective_copying",
            summary="copy the content tokens scattered among blanks, in order, after COPY",
            source=_MAD,
            fields=("num_tokens_to_copy",),
            presets=MappingProxyType(
                {
                    "quick": _sizes(16, 48, 2048, 256, num_tokens_to_copy=8),
                    "paper": _sizes(16, 256, 12_800, 1_280, num_tokens_to_copy=16),
                }
            ),
            build=_build_copying,
            check=_check_copying,
            answers=lambda cfg: cfg.vocab_size - 2,
        ),
        TaskSpec(
            name="memorization",
            summary="recall values of a fixed key->value map learned in the weights",
            source=_MAD,
            fields=(),
            presets=MappingProxyType(
                {"quick": _sizes(64, 32, 512, 256), "paper": _sizes(256, 32, 256, 1_280)}
            ),
            build=_build_memorization,
            check=_check_memorization,
            answers=_memo_keys,
        ),
        TaskSpec(
            name="compression",
            summary="after COMPRESS, reproduce the content token at each queried position",
            source=_MAD,
            fields=("content_len",),
            presets=MappingProxyType(
                {
                    "quick": _sizes(25, 32, 2048, 256, content_len=16),
                    "paper": _sizes(47, 63, 12_800, 1_280, content_len=31),
                }
            ),
            build=_build_compression,
            check=_check_compression,
            answers=lambda cfg: _compression_layout(cfg)[0],
        ),
        TaskSpec(
            name="mqar",
            summary="key-value pairs, then queries of every key at power-law gaps",
            source=_ZOOLOGY,
            fields=("num_pairs", "power_a", "random_fill"),
            presets=MappingProxyType(
                {
                    "quick": _sizes(128, 64, 2048, 256, num_pairs=8, power_a=0.01, random_fill=False),
                    "paper": _sizes(8192, 256, 100_000, 3_000, num_pairs=16, power_a=0.01, random_fill=False),
                }
            ),
            build=_build_mqar,
            check=_check_mqar,
            answers=lambda cfg: cfg.vocab_size - cfg.vocab_size // 2,
        ),
    )
}


def _spec(name: str) -> TaskSpec:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(TASKS)}")
    return TASKS[name]


def _check_seed(seed: int) -> None:
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


# -- public API -------------------------------------------------------------------------------------


def task_config(name: str, preset: str = "quick", **overrides: object) -> TaskConfig:
    """The named preset of a task, with fields overridden.

    Raises ValueError for an unknown task, preset or field (naming the valid ones) and
    for settings that are not a valid instance of the task.
    """
    spec = _spec(name)
    if preset not in spec.presets:
        raise ValueError(f"unknown preset {preset!r} for {name}; valid presets: {', '.join(spec.presets)}")
    unknown = sorted(set(overrides) - set(spec.settable))
    if unknown:
        raise ValueError(
            f"unknown field(s) {', '.join(unknown)} for {name}; valid fields: {', '.join(spec.settable)}"
        )
    config = TaskConfig(name=name, **{**spec.presets[preset], **overrides})
    spec.validate(config)
    return config


def suite(preset: str = "quick") -> list[TaskConfig]:
    """The preset of every task, in the order of ``TASKS``."""
    return [task_config(name, preset) for name in TASKS]


def chance_accuracy(config: TaskConfig) -> float:
    """Accuracy of a constant guess: one over the number of possible answer tokens."""
    return 1.0 / _spec(config.name).answers(config)


def generate(config: TaskConfig, split: str, seed: int = 0) -> TaskData:
    """Generate the ``split`` ("train" or "test") of a task, deterministically from ``seed``.

    Train and test are drawn from different streams derived from the seed; the
    memorization map is derived from the seed alone, so both splits share it.
    """
    if not isinstance(config, TaskConfig):
        raise TypeError(f"config must be a TaskConfig, got {type(config).__name__}")
    spec = _spec(config.name)
    spec.validate(config)
    _check_split(split)
    _check_seed(seed)
    n = config.n_examples(split)
    rng = _rng(int(seed), _SPLIT_TAG[split], _task_tag(config.name))
    # Built in chunks of rows (a fixed function of seq_len) to bound peak memory on
    # the long settings of the grids; the chunking is part of the definition.
    chunk = max(1, _CHUNK_TOKENS // config.seq_len)
    inputs = np.empty((n, config.seq_len), dtype=np.int64)
    targets = np.empty((n, config.seq_len), dtype=np.int64)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        inputs[start:stop], targets[start:stop] = spec.build(config, rng, stop - start, int(seed))
    # Rows without a scored position (rare: e.g. a short recall sequence that never
    # repeats a key) are redrawn from the same stream, so the result stays deterministic.
    for _ in range(_MAX_REDRAWS):
        empty = np.flatnonzero((targets == IGNORE).all(axis=1))
        if empty.size == 0:
            break
        more_inputs, more_targets = spec.build(config, rng, empty.size, int(seed))
        inputs[empty], targets[empty] = more_inputs, more_targets
    else:
        raise ValueError(f"{config.name}: setting too tight, sequences without a scored position")
    assert inputs.shape == targets.shape == (n, config.seq_len)
    assert inputs.min() >= 0 and inputs.max() < config.vocab_size
    return TaskData(
        config=config,
        inputs=torch.from_numpy(np.ascontiguousarray(inputs)),
        targets=torch.from_numpy(np.ascontiguousarray(targets)),
        split=split,
        seed=int(seed),
    )


def accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Argmax accuracy over the positions where ``targets != IGNORE``.

    ``logits`` is ``(..., V)`` with leading dimensions equal to ``targets.shape``
    (normally ``(N, T, V)`` and ``(N, T)``). NaN when no position is scored.
    """
    if logits.dim() != targets.dim() + 1 or logits.shape[:-1] != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} do not match targets {tuple(targets.shape)}")
    targets = targets.to(logits.device)
    mask = targets != IGNORE
    total = int(mask.sum())
    if total == 0:
        return float("nan")
    correct = int((logits.argmax(dim=-1)[mask] == targets[mask]).sum())
    return correct / total


# -- published grids ---------------------------------------------------------------------------------


# The MAD protocol varies one variable of the baseline at a time.
_MAD_CHANGES: dict[str, dict[str, list[int | float]]] = {
    "in_context_recall": {
        "vocab_size": [32, 64, 128],
        "seq_len": [256, 512, 1024],
        "n_train": [6400, 3200, 1600, 800],
    },
    "fuzzy_recall": {
        "vocab_size": [32, 64, 128],
        "seq_len": [256, 512, 1024],
        "n_train": [6400, 3200, 1600, 800],
    },
    "noisy_recall": {
        "vocab_size": [48, 80, 144],  # 16 of them noise
        "seq_len": [256, 512, 1024],
        "n_train": [6400, 3200, 1600, 800],
        "frac_noise": [0.4, 0.6, 0.8],
    },
    "selective_copying": {
        "vocab_size": [32, 64, 128],
        "seq_len": [512, 1024],
        "n_train": [6400, 3200, 1600, 800],
        "num_tokens_to_copy": [32, 64, 96],
    },
    "memorization": {"vocab_size": [512, 1024, 2048, 4096, 8192]},
    # In MAD's own terms (vocabulary including the compression token, length including it).
    "compression": {
        "mad_vocab": [32, 64, 128],
        "mad_len": [64, 128, 256],
        "n_train": [6400, 3200, 1600, 800],
    },
}

_MQAR_GRID = ((64, 4), (128, 8), (256, 16), (512, 64))


def _compression_from_mad(mad_vocab: int, mad_len: int, **rest: object) -> dict[str, object]:
    """MAD's (vocabulary incl. the compression token, length incl. it) -> our fields."""
    content_ids, length = mad_vocab - 1, mad_len - 1
    return dict(vocab_size=content_ids + 1 + length, seq_len=2 * length + 1, content_len=length, **rest)


def paper_grid(name: str = "mqar") -> list[TaskConfig]:
    """The published settings of a task: the ``paper`` preset and its difficulty grid.

    MAD tasks: the baseline first, then every single-variable change of the MAD
    protocol. MQAR: Zoology's Figure-2 points (T, pairs) = (64, 4), (128, 8),
    (256, 16), (512, 64).
    """
    _spec(name)
    if name == "mqar":
        return [task_config("mqar", "paper", seq_len=T, num_pairs=k) for T, k in _MQAR_GRID]
    configs = [task_config(name, "paper")]
    for key, values in _MAD_CHANGES[name].items():
        for value in values:
            if name == "compression":
                base = {"mad_vocab": 16, "mad_len": 32}
                if key in base:
                    base[key] = value
                    configs.append(task_config(name, "paper", **_compression_from_mad(**base)))
                else:
                    configs.append(task_config(name, "paper", **{key: value}))
            else:
                configs.append(task_config(name, "paper", **{key: value}))
    seen: set[str] = set()
    unique = []
    for cfg in configs:
        if cfg.fingerprint() not in seen:
            seen.add(cfg.fingerprint())
            unique.append(cfg)
    return unique
