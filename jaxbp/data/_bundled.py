"""Small, offline data sets and a reproducible minibatch iterator.

Everything here is a plain function returning NumPy arrays (which every JAX function
accepts). Nothing is ever downloaded: ``digits`` uses the copy of the UCI 8x8 digits
that ships inside scikit-learn, and the toy tasks are generated from a seed.

* ``digits``        -- 1797 8x8 grey-level images of the digits 0-9, split train/test.
* ``stratified_split`` -- the deterministic, per-class train/test split ``digits`` uses.
* ``xor``           -- Gaussian points labelled by the sign of ``x0 * x1`` (binary target).
* ``two_spirals``   -- two interleaved spirals (two classes).
* ``batches``       -- minibatches of any pytree of arrays, shuffled with a JAX PRNG key.
* ``num_batches``   -- how many batches ``batches`` yields.

Bad arguments raise ``ValueError`` whose message starts with the function's name.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from typing import Any, Literal, NamedTuple, TypeVar, overload

import jax
import numpy as np

__all__ = [
    "DIGITS_NUM_CLASSES",
    "DIGITS_IMAGE_SHAPE",
    "Dataset",
    "digits",
    "stratified_split",
    "xor",
    "two_spirals",
    "batches",
    "num_batches",
]

DIGITS_NUM_CLASSES = 10
DIGITS_IMAGE_SHAPE = (8, 8, 1)  # (H, W, C) of one image in the "nhwc" layout

Split = Literal["train", "test", "both"]
Layout = Literal["flat", "nhwc"]
T = TypeVar("T")


class Dataset(NamedTuple):
    """A train/test split: ``x_*`` are (N, ...) features, ``y_*`` are (N,) int32 labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def train(self) -> tuple[np.ndarray, np.ndarray]:
        """``(x_train, y_train)``."""
        return self.x_train, self.y_train

    @property
    def test(self) -> tuple[np.ndarray, np.ndarray]:
        """``(x_test, y_test)``."""
        return self.x_test, self.y_test

    @property
    def num_classes(self) -> int:
        """``1 + the largest label`` over both splits (labels are 0..K-1)."""
        top = -1
        for y in (self.y_train, self.y_test):
            if y.size:
                top = max(top, int(np.max(y)))
        return top + 1


# --------------------------------------------------------------------------- helpers


def _check_seed(fn: str, seed: Any) -> int:
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{fn}: seed must be a non-negative int, got {seed!r}")
    return int(seed)


def _check_positive_int(fn: str, name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{fn}: {name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _check_test_fraction(fn: str, test_fraction: Any) -> float:
    try:
        f = float(test_fraction)
    except (TypeError, ValueError):
        f = math.nan
    if isinstance(test_fraction, (bool, np.bool_)) or not 0.0 < f < 1.0:
        raise ValueError(f"{fn}: test_fraction must lie strictly between 0 and 1, got {test_fraction!r}")
    return f


@functools.lru_cache(maxsize=1)
def _load_digits_raw() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits: (1797, 64) float64 pixels in 0..16, (1797,) int64 labels.

    Cached; the arrays are read-only so the cache cannot be corrupted by a caller.
    """
    from sklearn.datasets import load_digits  # local import: sklearn is slow to import

    bunch = load_digits()
    x = np.array(bunch.data, dtype=np.float64)
    y = np.array(bunch.target, dtype=np.int64)
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


# --------------------------------------------------------------------------- digits


def stratified_split(labels: np.ndarray, test_fraction: float = 0.2, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic per-class train/test split of ``labels`` (shape (N,)).

    Each class ``c`` with ``n_c`` members sends ``round(test_fraction * n_c)`` of them
    (clamped to ``[1, n_c - 1]`` when ``n_c >= 2``) to the test set. Returns
    ``(train_idx, test_idx)``: disjoint int64 index arrays that together hold every index
    in ``range(N)`` once, each in a seeded random order. Same seed -> same split.
    """
    fn = "stratified_split"
    f = _check_test_fraction(fn, test_fraction)
    seed = _check_seed(fn, seed)
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"{fn}: labels must have shape (N,), got shape {labels.shape}")
    rng = np.random.default_rng(seed)
    train_parts, test_parts = [], []
    for c in np.unique(labels):  # sorted, so the order of rng draws is fixed
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(idx.size)]
        n_test = int(round(f * idx.size))
        if idx.size >= 2:
            n_test = min(max(n_test, 1), idx.size - 1)
        test_parts.append(idx[:n_test])
        train_parts.append(idx[n_test:])
    train_idx = np.concatenate(train_parts) if train_parts else np.zeros(0, np.int64)
    test_idx = np.concatenate(test_parts) if test_parts else np.zeros(0, np.int64)
    train_idx = train_idx[rng.permutation(train_idx.size)].astype(np.int64)
    test_idx = test_idx[rng.permutation(test_idx.size)].astype(np.int64)
    return train_idx, test_idx


@overload
def digits(
    split: Literal["both"] = ...,
    *,
    layout: Layout = ...,
    test_fraction: float = ...,
    seed: int = ...,
    dtype: Any = ...,
) -> Dataset: ...


@overload
def digits(
    split: Literal["train", "test"],
    *,
    layout: Layout = ...,
    test_fraction: float = ...,
    seed: int = ...,
    dtype: Any = ...,
) -> tuple[np.ndarray, np.ndarray]: ...


def digits(
    split: Split = "both",
    *,
    layout: Layout = "flat",
    test_fraction: float = 0.2,
    seed: int = 0,
    dtype: Any = np.float32,
) -> Dataset | tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 handwritten digits (1797 images, 10 classes), split train/test.

    Pixels are scaled from 0..16 to [0, 1] and cast to ``dtype``; labels are int32 (N,).
    ``layout="flat"`` gives x of shape (N, 64); ``layout="nhwc"`` gives (N, 8, 8, 1)
    (the same values, row-major). The split is ``stratified_split(labels, test_fraction,
    seed=seed)``: per class, deterministic for a seed (about 1437 train / 360 test at 0.2).

    ``split="both"`` returns a ``Dataset(x_train, y_train, x_test, y_test)``;
    ``split="train"`` / ``"test"`` return just that part as ``(x, y)``.
    """
    fn = "digits"
    if split not in ("train", "test", "both"):
        raise ValueError(f"{fn}: split must be 'train', 'test' or 'both', got {split!r}")
    if layout not in ("flat", "nhwc"):
        raise ValueError(f"{fn}: layout must be 'flat' or 'nhwc', got {layout!r}")
    try:
        np_dtype = np.dtype(dtype)
    except TypeError:
        np_dtype = None
    if np_dtype is None or np_dtype.kind != "f":
        raise ValueError(f"{fn}: dtype must be a floating dtype, got {dtype!r}")
    f = _check_test_fraction(fn, test_fraction)
    seed = _check_seed(fn, seed)

    x_raw, y_raw = _load_digits_raw()
    train_idx, test_idx = stratified_split(y_raw, f, seed=seed)
    shape = (-1, 64) if layout == "flat" else (-1, *DIGITS_IMAGE_SHAPE)

    def part(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = (x_raw[idx] / 16.0).astype(np_dtype).reshape(shape)
        return x, y_raw[idx].astype(np.int32)

    if split == "train":
        return part(train_idx)
    if split == "test":
        return part(test_idx)
    return Dataset(*part(train_idx), *part(test_idx))


# --------------------------------------------------------------------------- toy tasks


def xor(num_samples: int = 100, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The XOR-like binary task: ``x ~ N(0, I_2)``, ``y = (x0 * x1 > 0)``.

    ``x = jax.random.normal(jax.random.key(seed), (num_samples, 2))`` as float32 (n, 2);
    ``y`` is float32 of shape (n, 1) with values in {0, 1} (a target for a sigmoid output).
    """
    fn = "xor"
    n = _check_positive_int(fn, "num_samples", num_samples)
    seed = _check_seed(fn, seed)
    x = np.asarray(jax.random.normal(jax.random.key(seed), (n, 2), dtype=np.float32))
    y = (x[:, 0] * x[:, 1] > 0).astype(np.float32)[:, None]
    return x, y


def two_spirals(
    num_samples: int = 200, *, noise: float = 0.05, turns: float = 1.5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved spirals in the plane: x float32 (n, 2), labels int32 (n,) in {0, 1}.

    Spiral 0 is ``r * (cos t, sin t)`` with ``t = 2*pi*turns*sqrt(u)``, ``u ~ U(0, 1)`` and
    ``r = t / (2*pi*turns)`` (so points lie within radius ~1); spiral 1 is spiral 0 rotated
    by pi. Gaussian noise of std ``noise`` is added to each coordinate. Class sizes are
    ``ceil(n/2)`` and ``floor(n/2)``; the rows come in a seeded random order.
    """
    fn = "two_spirals"
    n = _check_positive_int(fn, "num_samples", num_samples, minimum=2)
    try:
        noise_f = float(noise)
    except (TypeError, ValueError):
        noise_f = math.nan
    if not noise_f >= 0.0 or math.isinf(noise_f):
        raise ValueError(f"{fn}: noise must be a finite float >= 0, got {noise!r}")
    try:
        turns_f = float(turns)
    except (TypeError, ValueError):
        turns_f = math.nan
    if not turns_f > 0.0 or math.isinf(turns_f):
        raise ValueError(f"{fn}: turns must be a finite float > 0, got {turns!r}")
    seed = _check_seed(fn, seed)

    rng = np.random.default_rng(seed)
    labels = np.zeros(n, dtype=np.int32)
    labels[n - n // 2 :] = 1
    t = 2.0 * np.pi * turns_f * np.sqrt(rng.uniform(0.0, 1.0, size=n))
    r = t / (2.0 * np.pi * turns_f)
    angle = t + np.pi * labels
    x = np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1)
    x = x + noise_f * rng.standard_normal(size=(n, 2))
    order = rng.permutation(n)
    return x[order].astype(np.float32), labels[order]


# --------------------------------------------------------------------------- batching


def num_batches(num_examples: int, batch_size: int, drop_remainder: bool = False) -> int:
    """Number of batches ``batches`` yields for ``num_examples`` rows.

    ``num_examples // batch_size`` with ``drop_remainder``, else the ceiling of that.
    """
    fn = "num_batches"
    n = _check_positive_int(fn, "num_examples", num_examples, minimum=0)
    b = _check_positive_int(fn, "batch_size", batch_size)
    return n // b if drop_remainder else -(-n // b)


def _leading_dim(fn: str, data: Any) -> int:
    leaves = jax.tree_util.tree_leaves(data)
    if not leaves:
        raise ValueError(f"{fn}: data has no arrays, got {data!r}")
    dims = []
    for leaf in leaves:
        shape = np.shape(leaf)
        if len(shape) == 0:
            raise ValueError(f"{fn}: every array needs a leading (batch) axis; got a scalar {leaf!r}")
        dims.append(shape[0])
    if len(set(dims)) != 1:
        raise ValueError(f"{fn}: arrays must share their leading dimension, got leading dims {dims}")
    return dims[0]


def batches(
    data: T,
    batch_size: int,
    *,
    key: Any = None,
    shuffle: bool = True,
    drop_remainder: bool = False,
) -> Iterator[T]:
    """Iterate over minibatches of ``data``, any pytree of arrays with a common leading axis N.

    Each item has the same structure as ``data`` (e.g. ``batches((x, y), 32, key=k)``
    yields ``(xb, yb)`` tuples) with leading axis ``batch_size``; the last batch is
    smaller unless ``drop_remainder``, in which case it is skipped. With ``shuffle`` the
    row order is ``jax.random.permutation(key, N)``, so the same key gives the same epoch;
    ``key`` is a JAX PRNG key or an int seed and is required. Without ``shuffle`` rows
    come in order and ``key`` is ignored. Leaves keep their type (NumPy in, NumPy out).
    Arguments are checked when ``batches`` is called, not on the first ``next``.
    """
    fn = "batches"
    b = _check_positive_int(fn, "batch_size", batch_size)
    n = _leading_dim(fn, data)
    perm: np.ndarray | None = None
    if shuffle:
        if key is None:
            raise ValueError(f"{fn}: shuffle=True needs key= (a jax PRNG key or an int seed), got None")
        if isinstance(key, (int, np.integer)) and not isinstance(key, (bool, np.bool_)):
            key = jax.random.key(_check_seed(fn, key))
        try:
            perm = np.asarray(jax.random.permutation(key, n))
        except (TypeError, ValueError) as e:
            raise ValueError(f"{fn}: key must be a jax PRNG key or an int seed, got {key!r}") from e
    count = num_batches(n, b, drop_remainder)

    def gen() -> Iterator[T]:
        for i in range(count):
            if perm is None:
                yield jax.tree_util.tree_map(lambda a, i=i: a[i * b : (i + 1) * b], data)
            else:
                idx = perm[i * b : (i + 1) * b]
                yield jax.tree_util.tree_map(lambda a, idx=idx: a[idx], data)

    return gen()
