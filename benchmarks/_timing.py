"""Timing for the benchmark suite: round-robin rounds in one process, paired ratios, PyTorch apart.

* :func:`time_variants` -- wall time of several zero-argument callables measured round-robin
  (each round runs every variant once, starting at a rotating position), compile and warm-up
  excluded; each variant gets a :class:`Timing` with the min, the median and every round's time.
* :func:`paired_ratio` -- the median of per-round ratios of two variants, with a ~95% interval.
* :func:`time_beside_torch` -- the JAX variants' rounds and a PyTorch step's, in alternating blocks;
  :func:`blockwise_ratio` pairs them block by block.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

__all__ = ["TORCH_BLOCKS", "Timing", "blockwise_ratio", "paired_ratio", "time_beside_torch", "time_variants"]

# how many alternating JAX/torch block pairs time_beside_torch cuts the rounds into
TORCH_BLOCKS = 5


@dataclasses.dataclass(frozen=True)
class Timing:
    """Wall time of one variant over ``repeats`` round-robin rounds, in milliseconds;
    ``samples_ms[r]`` is round ``r``'s time (rounds line up across the variants of one call)."""

    min_ms: float
    median_ms: float
    repeats: int
    samples_ms: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "samples_ms": list(self.samples_ms)}


def paired_ratio(numerator: Timing, denominator: Timing) -> dict[str, float]:
    """Median of the per-round ratios ``numerator / denominator`` and a distribution-free ~95%
    confidence interval for it (order statistics ``k`` and ``n - 1 - k`` of the sorted ratios,
    ``k = floor((n - 1.96 sqrt(n)) / 2)``: the binomial interval of a median; the full range
    when ``n < 6``).  Pairing by round cancels drift in the machine's speed that a ratio of
    medians keeps."""
    if not numerator.samples_ms or len(numerator.samples_ms) != len(denominator.samples_ms):
        raise ValueError(
            "paired_ratio: both timings need samples from the same rounds, got "
            f"{len(numerator.samples_ms)} and {len(denominator.samples_ms)}"
        )
    ratios = np.sort(np.asarray(numerator.samples_ms) / np.asarray(denominator.samples_ms))
    n = len(ratios)
    k = max(0, math.floor((n - 1.96 * math.sqrt(n)) / 2))
    return {"median": float(np.median(ratios)), "low": float(ratios[k]), "high": float(ratios[n - 1 - k])}


def _block(out: Any) -> Any:
    """Wait for every JAX array in ``out`` (other leaves, e.g. torch tensors, are already computed)."""
    for leaf in jax.tree_util.tree_leaves(out):
        if isinstance(leaf, jax.Array):
            leaf.block_until_ready()
    return out


def time_variants(
    variants: Mapping[str, Callable[[], Any]], repeats: int = 10, warmup: int = 1, min_seconds: float = 0.0
) -> dict[str, Timing]:
    """Time zero-argument callables round-robin: each round runs every variant once.

    ``warmup`` untimed calls per variant come first (compilation, caches). Round ``r``
    starts at variant ``r mod len(variants)``, so no variant always runs first or just
    after a given other one; drift in the machine's speed (frequency, other load) is
    shared by all. Results are JAX-synchronised (``block_until_ready``).

    ``min_seconds > 0``: one untimed probe round after the warm-up, and then as many rounds
    as fill ``min_seconds`` if that is more than ``repeats``: a millisecond step gets hundreds
    of rounds, which a paired ratio needs to resolve differences of a few percent.
    """
    if repeats < 1 or warmup < 0 or min_seconds < 0:
        raise ValueError(
            "time_variants: repeats must be >= 1, warmup and min_seconds >= 0 "
            f"(repeats={repeats}, warmup={warmup}, min_seconds={min_seconds})"
        )
    names = list(variants)
    for name in names:
        for _ in range(warmup):
            _block(variants[name]())
    if min_seconds > 0:
        start = time.perf_counter()
        for name in names:
            _block(variants[name]())
        repeats = max(repeats, math.ceil(min_seconds / max(time.perf_counter() - start, 1e-9)))
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            _block(variants[name]())
            samples[name].append(time.perf_counter() - start)
    return {
        name: Timing(1e3 * min(s), 1e3 * float(np.median(s)), repeats, tuple(1e3 * t for t in s))
        for name, s in samples.items()
    }


def _joined(parts: list[Timing]) -> Timing:
    samples = tuple(t for part in parts for t in part.samples_ms)
    return Timing(min(samples), float(np.median(samples)), len(samples), samples)


def time_beside_torch(
    variants: Mapping[str, Callable[[], Any]],
    torch_step: Callable[[], Any] | None,
    repeats: int = 10,
    min_seconds: float = 0.0,
    blocks: int = TORCH_BLOCKS,
) -> dict[str, Timing]:
    """:func:`time_variants` of the JAX ``variants``, and of ``torch_step`` (as ``"torch"``) in
    blocks of its own that alternate with theirs.

    PyTorch's OpenMP threads keep spinning for a while after a step, and in one rotation they
    slowed whichever JAX variant ran next: the MLP's manual step measured 1.19x its autodiff
    twin in the suite (paired interval [1.02, 1.23]) and 0.99 with torch out of the rotation.
    So torch never runs inside a JAX round. But one torch block after all the JAX rounds
    samples another stretch of time, and this VM's speed drifts by up to 2x over minutes
    (the same torch step: 25 ms and 52 ms an hour apart). So the rounds are cut into
    ``blocks`` pairs of blocks, JAX then torch, each block warmed up by one untimed call per
    variant; every variant gets at least ``repeats`` rounds and ``min_seconds`` in all, in
    equal blocks (the rounds per block are fixed by the first block), so
    :func:`blockwise_ratio` can pair the blocks. Without torch: plain :func:`time_variants`.
    """
    if torch_step is None:
        return time_variants(variants, repeats, min_seconds=min_seconds)
    if blocks < 1:
        raise ValueError(f"time_beside_torch: blocks must be >= 1, got {blocks}")
    per_block = math.ceil(repeats / blocks)
    sides: list[tuple[Mapping[str, Callable[[], Any]], list[dict[str, Timing]]]] = [
        (variants, []),
        ({"torch": torch_step}, []),
    ]
    for block in range(blocks):
        for side_variants, parts in sides:
            rounds = parts[0][next(iter(side_variants))].repeats if parts else per_block
            parts.append(time_variants(side_variants, rounds, min_seconds=min_seconds / blocks if block == 0 else 0.0))
    return {name: _joined([part[name] for part in parts]) for _, parts in sides for name in parts[0]}


def blockwise_ratio(numerator: Timing, denominator: Timing, blocks: int = TORCH_BLOCKS) -> dict[str, float]:
    """For :func:`time_beside_torch`'s alternating blocks: the ratio of the two variants' medians
    in each pair of blocks, summarised as their median and their range (``low``, ``high``)."""
    if not numerator.samples_ms or len(numerator.samples_ms) % blocks or len(denominator.samples_ms) % blocks:
        raise ValueError(
            f"blockwise_ratio: need samples in {blocks} equal blocks, got "
            f"{len(numerator.samples_ms)} and {len(denominator.samples_ms)}"
        )
    ratios = [
        float(np.median(a) / np.median(b))
        for a, b in zip(
            np.split(np.asarray(numerator.samples_ms), blocks), np.split(np.asarray(denominator.samples_ms), blocks)
        )
    ]
    return {"median": float(np.median(ratios)), "low": min(ratios), "high": max(ratios)}
