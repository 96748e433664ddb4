"""Argument builders of the op catalog: shapes, random float64 data, edge values.

A builder is ``make_args(seed, shape) -> args``; what a "shape" means is the case's own
business (an NHWC input, a shared ``(B, T, H, D)`` for attention, ``(B, T, F, H)`` for a
recurrent cell), sampled by the case's ``sample_shape(rng)``. Smooth draws keep inputs
of kinked ops 0.05 away from the kink so finite differences never straddle it;
:func:`with_edge_values` then puts the kinks, ties, saturation and huge values back.
Test data comes from NumPy: an eager ``jax.random`` draw compiles a program for every new
shape (about 0.25 s on CPU, more than the gradient check of a small op).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

Shape = tuple[int, ...]
ShapeSampler = Callable[[np.random.Generator], Shape]

#: What an edge draw writes into the arguments: the kink, saturation of sigmoid/tanh/gelu,
#: "huge logits"; ties are copies of the neighbouring element. 1e3 saturates as fully as any
#: larger value in float64 (e^-1000 underflows to 0) while products of two such values
#: (attention's second derivative) still round below the reference tolerance.
EDGE_VALUES = (0.0, 30.0, -30.0, 1e3, -1e3)


def ranked(min_rank: int = 1, max_rank: int = 3, max_size: int = 6) -> ShapeSampler:
    """A sampler of plain array shapes: rank in [min_rank, max_rank], each size in [1, max_size]."""

    def sample(rng: np.random.Generator) -> Shape:
        rank = int(rng.integers(min_rank, max_rank + 1))
        return tuple(int(d) for d in rng.integers(1, max_size + 1, size=rank))

    return sample


def normal(seed: int, shape: Shape, scale: float = 1.0) -> jax.Array:
    return jnp.asarray(scale * np.random.default_rng(seed).standard_normal(shape), jnp.float64)


def integers(seed: int, low: int, high: int, shape: Shape) -> jax.Array:
    return jnp.asarray(np.random.default_rng(seed).integers(low, high, shape))


def uniform(seed: int, shape: Shape) -> jax.Array:
    return jnp.asarray(np.random.default_rng(seed).random(shape), jnp.float64)


def away_from_kinks(x: jax.Array) -> jax.Array:
    """Move values at least 0.05 away from 0."""
    return x + 0.05 * jnp.sign(x)


def with_edge_values(args: tuple, positions: tuple[int, ...], seed: int) -> tuple:
    """``args`` with about 40% of the elements of the float leaves of ``args[positions]``
    replaced by an edge value or a copy of the previous element (a tie)."""
    rng = np.random.default_rng(seed + 7919)

    def edged(x):
        if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
            return x
        flat = np.array(x, np.float64).ravel()
        for i in np.flatnonzero(rng.random(flat.size) < 0.4):
            choice = int(rng.integers(len(EDGE_VALUES) + 1))
            flat[i] = flat[i - 1] if choice == len(EDGE_VALUES) and i else EDGE_VALUES[choice % len(EDGE_VALUES)]
        return jnp.asarray(flat.reshape(np.shape(x)), jnp.float64)

    return tuple(jax.tree_util.tree_map(edged, a) if i in positions else a for i, a in enumerate(args))


def leaf_offset(args: tuple, position: int) -> int:
    """The index among ``jax.tree_util.tree_leaves(args)`` of ``args[position]``'s first leaf."""
    return sum(len(jax.tree_util.tree_leaves(a)) for a in args[:position])


def unary(transform: Callable = lambda x: x, scale: float = 2.0):
    return lambda seed, shape: (transform(normal(seed, shape, scale)),)


def pair(second: Callable[[int, Shape], jax.Array], scale: float = 1.0):
    return lambda seed, shape: (normal(seed, shape, scale), second(seed + 1, shape))


def dense_args(seed, shape):
    out = 1 + seed % 4
    params = {"w": normal(seed, (shape[-1], out)), "b": normal(seed + 1, (out,))}
    return params, normal(seed + 2, shape)


def integer_labels(seed, shape):
    return integers(seed, 0, shape[-1], shape[:-1])


def probabilities(seed, shape):
    return jax.nn.softmax(normal(seed, shape))


def at_least(shape: Shape, axis: int, size: int) -> Shape:
    """``shape`` with ``shape[axis]`` raised to ``size``: normalising groups of two make
    the output depend on x only through eps, too flat for finite differences."""
    dims = list(shape)
    dims[axis] = max(dims[axis], size)
    return tuple(dims)


def _norm_params(seed, features):
    return {"gamma": 1 + normal(seed, (features,), 0.5), "beta": normal(seed + 100, (features,))}


def batch_norm_args(seed, shape):
    shape = at_least(shape, 0, 3)
    return _norm_params(seed, shape[-1]), normal(seed + 1, shape, 2.0)


def batch_norm_eval_args(seed, shape):
    params, x = batch_norm_args(seed, shape)
    return params, x, normal(seed + 2, (x.shape[-1],)), 0.5 + uniform(seed + 3, (x.shape[-1],))


def layer_norm_args(seed, shape):
    shape = at_least(shape, -1, 3)
    return _norm_params(seed, shape[-1]), normal(seed + 1, shape, 2.0)


def attention_shape(rng: np.random.Generator) -> Shape:
    """A shared ``(B, T, H, D)`` for attention's q (k and v get their own length from the seed):
    T >= 2, since with a single key softmax is constant and dq = dk = 0 exactly."""
    return (int(rng.integers(1, 3)), int(rng.integers(2, 6)), 2 * int(rng.integers(1, 3)), int(rng.integers(1, 4)))


def attention_args(kv_heads_per_query: int, masked: bool = False):
    """q ``(B, T, H, D)``; k, v ``(B, T', H / kv_heads_per_query, D)`` with T' in [2, 5] from the seed;
    ``masked``: a boolean mask ``(B, 1, 1, T')`` hiding key 0 of the first sequence."""

    def make(seed, shape):
        batch, _, heads, dim = shape
        kv_shape = (batch, 2 + seed % 4, heads // kv_heads_per_query, dim)
        q, k, v = normal(seed, shape), normal(seed + 1, kv_shape), normal(seed + 2, kv_shape)
        if not masked:
            return q, k, v
        return q, k, v, jnp.ones((batch, 1, 1, kv_shape[1]), bool).at[0, 0, 0, 0].set(False)

    return make


def recurrent_shape(rng: np.random.Generator) -> Shape:
    """``(B, T, F, H)`` for a recurrent cell: x is ``(B, T, F)``, the hidden size H."""
    return (int(rng.integers(1, 4)), int(rng.choice([1, 2, 7])), int(rng.integers(1, 4)), int(rng.integers(1, 4)))


def recurrent_args(num_gates: int, biases: tuple[str, ...], lstm_state: bool = False):
    """params, x ``(B, T, F)``, the initial state and lengths in [0, T] (the first one T - 1,
    so there is always a padded step)."""

    def make(seed, shape):
        batch, time, features, hidden = shape
        params = {
            "w_ih": normal(seed, (features, num_gates * hidden), 0.7),
            "w_hh": normal(seed + 1, (hidden, num_gates * hidden), 0.7),
        }
        params.update({name: normal(seed + 2 + i, (num_gates * hidden,), 0.5) for i, name in enumerate(biases)})
        h0 = normal(seed + 5, (batch, hidden))
        state = (h0, normal(seed + 6, (batch, hidden))) if lstm_state else h0
        lengths = integers(seed + 7, 0, time + 1, (batch,)).at[0].set(time - 1)
        return params, normal(seed + 4, (batch, time, features)), state, lengths

    return make


def sequence_shape(rng: np.random.Generator) -> Shape:
    """``(B, T, F)`` batch-major sequences."""
    return (int(rng.integers(1, 4)), int(rng.integers(1, 6)), int(rng.integers(1, 4)))


def reverse_args(seed, shape):
    lengths = integers(seed + 1, 0, shape[1] + 1, (shape[0],)).at[0].set(shape[1] - 1)
    return normal(seed, shape), lengths


def concatenate_args(seed, shape):
    """Two arrays that differ in the last axis only."""
    return normal(seed, shape), normal(seed + 1, (*shape[:-1], 1 + seed % 3))


def embedding_args(seed, shape):
    ids = integers(seed, 0, 1 + seed % 5, shape[:-1])
    return {"w": normal(seed + 1, (1 + seed % 5, shape[-1]))}, ids


def nhwc_shape(rng: np.random.Generator) -> Shape:
    """An NHWC image batch ``(N, H, W, C)`` with H, W in [3, 7] (odd and even sizes), C in {2, 4}."""
    return (int(rng.integers(1, 3)), int(rng.integers(3, 8)), int(rng.integers(3, 8)), 2 * int(rng.integers(1, 3)))


def nwc_shape(rng: np.random.Generator) -> Shape:
    """A 1-d batch ``(N, W, C)`` with W in [3, 9], C in {2, 4}."""
    return (int(rng.integers(1, 3)), int(rng.integers(3, 10)), 2 * int(rng.integers(1, 3)))


def conv_args(kernel: tuple[int, ...], cout: int, groups: int = 1, transposed: bool = False):
    """params ``{"w": (*kernel, cin / groups, cout), "b"}`` (transposed: ``(*kernel, cout / groups, cin)``) and x."""

    def make(seed, shape):
        cin = shape[-1]
        w_shape = (*kernel, cout // groups, cin) if transposed else (*kernel, cin // groups, cout)
        return {"w": normal(seed, w_shape), "b": normal(seed + 1, (cout,))}, normal(seed + 2, shape)

    return make
