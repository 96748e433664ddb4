"""Data-parallel training on JAX's own sharding: a 1-D device mesh whose axis splits the batch.

    parallel = data_parallel(4)            # the first 4 of jax.devices(), mesh axis "batch"
    result = fit(model, data, config, parallel=parallel)

Nothing here is a communication layer: the train step is an ordinary ``jax.jit`` and XLA
partitions it (GSPMD) from the shardings of its inputs, which this module chooses:

* the batch: every leaf's leading axis is split over the mesh, ``(B / n, ...)`` per
  device; ``B`` must be divisible by ``n`` (:func:`check_batch_size` says so clearly);
* the training state (params, optimizer state, batch-norm statistics, key, step):
  replicated on every device; or, with ``shard_weights_from=N``, every leaf with at least
  two axes and ``N`` elements is split along its largest axis divisible by ``n`` --
  fully-sharded data parallel (ZeRO-3): XLA gathers a weight where it is used and
  reduce-scatters its gradient. The rule reads shapes only, so Adam's moments follow
  their weight;
* gradients: the loss is the mean over the *global* batch, so ``jax.grad`` of it is the
  global-batch gradient; XLA inserts the all-reduce (or reduce-scatter) -- there is no
  hand-written ``psum``, and the hand-written VJPs run unchanged on each device's slice.

Batch norm uses the statistics of the **global** batch (synchronized batch norm): the
op's ``mean`` over a sharded axis is a cross-device mean, so normalisation, gradients and
running statistics equal one device's on the same global batch (not the per-device
statistics of PyTorch's DistributedDataParallel without ``SyncBatchNorm``; those are what
the same op computes inside ``jax.shard_map``, where each device sees only its slice).

Dropout draws the same masks as on one device: the mask is ``bernoulli(key, shape)`` of
the global shape, and JAX's threefry generator is partitionable
(``jax_threefry_partitionable``, on by default), so each device generates exactly its
slice of the single-device mask.

Several hosts: call ``jax.distributed.initialize()`` before anything else; ``jax.devices()``
then lists every host's devices and the mesh spans them. Every process runs the same
``fit`` on the same data with the same seed (so all shuffle alike) and
:func:`shard_batch` hands each local device only its slice
(``jax.make_array_from_callback``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, cast

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxbp.validation import optional_positive_int

__all__ = [
    "DataParallel",
    "check_batch_size",
    "data_parallel",
    "parallel_train_step",
    "shard_batch",
    "shard_state",
    "state_shardings",
]

BATCH_AXIS = "batch"


class DataParallel(NamedTuple):
    """Where a data-parallel step runs: a 1-D ``mesh`` whose one axis splits the batch, and
    the size (elements) from which a weight is split over that axis too (None: every
    weight replicated)."""

    mesh: Mesh
    shard_weights_from: int | None = None

    @property
    def num_devices(self) -> int:
        """Devices in the mesh (across all hosts)."""
        return self.mesh.size

    @property
    def axis(self) -> str:
        """The mesh axis the batch (and sharded weights) are split over."""
        return self.mesh.axis_names[0]

    def describe(self, batch_size: int) -> str:
        """One line for the progress output, e.g. ``data parallel: 4 cpu devices x 16 examples``."""
        platform = self.mesh.devices.flat[0].platform
        hosts = len({device.process_index for device in self.mesh.devices.flat})
        where = f" on {hosts} hosts" if hosts > 1 else ""
        fsdp = f", weights >= {self.shard_weights_from} elements sharded" if self.shard_weights_from is not None else ""
        return f"data parallel: {self.num_devices} {platform} devices{where} x {batch_size // self.num_devices} examples{fsdp}"


def data_parallel(
    devices: int | Sequence[jax.Device] | None = None, *, shard_weights_from: int | None = None
) -> DataParallel:
    """A :class:`DataParallel` over ``devices``: a count (the first ``n`` of ``jax.devices()``,
    which spans every host after ``jax.distributed.initialize()``), explicit devices, or
    None for all of them. ``shard_weights_from=N`` also splits every weight with at least
    ``N`` elements (and two axes) over the devices, fully-sharded-data-parallel style."""
    available = jax.devices()
    if devices is None:
        chosen = list(available)
    elif isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
        if devices < 1:
            raise ValueError(f"data_parallel: devices must be >= 1, got {devices}")
        if devices > len(available):
            raise ValueError(
                f"data_parallel: {devices} devices requested but only {len(available)} available "
                f"({available[0].platform}); to try several devices on one CPU, set "
                f"XLA_FLAGS=--xla_force_host_platform_device_count={devices} before JAX starts"
            )
        chosen = list(available[:devices])
    else:
        chosen = list(cast("Sequence[jax.Device]", devices))
        if not chosen or not all(isinstance(device, jax.Device) for device in chosen):
            raise TypeError(
                f"data_parallel: devices must be a count, a non-empty sequence of jax devices or None, got {devices!r}"
            )
    shard_weights_from = optional_positive_int("data_parallel", "shard_weights_from", shard_weights_from)
    return DataParallel(Mesh(np.array(chosen), (BATCH_AXIS,)), shard_weights_from)


def check_batch_size(batch_size: int, parallel: DataParallel, what: str = "batch size") -> None:
    """Raise a ValueError unless ``batch_size`` splits evenly over the devices."""
    n = parallel.num_devices
    if batch_size % n:
        lower, upper = (batch_size // n) * n, (batch_size // n + 1) * n
        nearest = f"{lower} or {upper}" if lower else f"{upper}"
        raise ValueError(
            f"data parallel: the {what} {batch_size} is not divisible by the {n} devices; "
            f"every device needs the same number of examples (use {nearest}, or another device count)"
        )


# ------------------------------------------------------------------------------ placement


def _leaf_spec(leaf: Any, parallel: DataParallel) -> P:
    """P() (replicated), or the leaf split along its largest axis divisible by the device count
    when it has >= 2 axes and >= ``shard_weights_from`` elements."""
    shape = tuple(getattr(leaf, "shape", ()))
    threshold, n = parallel.shard_weights_from, parallel.num_devices
    if threshold is None or n == 1 or len(shape) < 2 or math.prod(shape) < threshold:
        return P()
    divisible = [axis for axis, size in enumerate(shape) if size % n == 0]
    if not divisible:
        return P()
    axis = max(divisible, key=lambda a: shape[a])
    return P(*(parallel.axis if a == axis else None for a in range(len(shape))))


def state_shardings(tree: Any, parallel: DataParallel) -> Any:
    """A ``NamedSharding`` per leaf of a training state (see the module docstring)."""
    return jax.tree_util.tree_map(lambda leaf: NamedSharding(parallel.mesh, _leaf_spec(leaf, parallel)), tree)


def _put(value: Any, sharding: NamedSharding) -> jax.Array:
    """``value`` (the same global value in every process) laid out as ``sharding``."""
    if jax.process_count() == 1:
        return jax.device_put(value, sharding)
    if jax.dtypes.issubdtype(getattr(value, "dtype", None), jax.dtypes.prng_key):
        return jax.random.wrap_key_data(_put(jax.random.key_data(value), sharding), impl=jax.random.key_impl(value))
    host = np.asarray(value)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def shard_state(tree: Any, parallel: DataParallel) -> Any:
    """``tree`` (a training state) placed on the mesh: replicated, large weights split."""
    return jax.tree_util.tree_map(_put, tree, state_shardings(tree, parallel))


def _batch_size(batch: Any) -> int:
    sizes = {int(np.shape(leaf)[0]) if np.ndim(leaf) else -1 for leaf in jax.tree_util.tree_leaves(batch)}
    if len(sizes) != 1 or -1 in sizes:
        raise ValueError(
            f"data parallel: every leaf of the batch needs the same leading (batch) axis, got sizes {sorted(sizes)}"
        )
    return sizes.pop()


def shard_batch(batch: Any, parallel: DataParallel) -> Any:
    """``batch`` (every leaf ``(B, ...)``) split along its leading axis over the devices."""
    check_batch_size(_batch_size(batch), parallel)
    split = NamedSharding(parallel.mesh, P(parallel.axis))
    return jax.tree_util.tree_map(lambda leaf: _put(leaf, split), batch)


# ------------------------------------------------------------------------------- the step


@functools.lru_cache(maxsize=32)
def parallel_train_step(
    train_step: Callable[[Any, Any], tuple[Any, Any]], parallel: DataParallel
) -> Callable[[Any, Any], tuple[Any, Any]]:
    """``train_step(state, batch) -> (state, metrics)`` (from ``make_train_step``) run over
    ``parallel``'s mesh: jitted with the new state constrained to :func:`state_shardings`,
    so every step sees the layout it was compiled for; metrics come back replicated.
    Give it a state from :func:`shard_state` and batches from :func:`shard_batch`."""
    replicated = NamedSharding(parallel.mesh, P())

    def step(state: Any, batch: Any) -> tuple[Any, Any]:
        new_state, metrics = train_step(state, batch)
        new_state = jax.lax.with_sharding_constraint(new_state, state_shardings(new_state, parallel))
        return new_state, jax.lax.with_sharding_constraint(
            metrics, jax.tree_util.tree_map(lambda _: replicated, metrics)
        )

    return jax.jit(step)
