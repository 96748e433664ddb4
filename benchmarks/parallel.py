"""Parallel section: data-parallel training throughput (examples/s) on 1, 2, 4, ... devices.

The model is the MLP section's (784-1024-1024-1024-10, ReLU, batch 256, softmax
cross-entropy, float32, SGD), trained with :func:`jaxbp.train.make_train_step` run over
:func:`jaxbp.train.data_parallel` meshes of 1, 2, 4, ... devices (powers of two up to all
devices) and, on the most devices, with the weights sharded FSDP-style too. Every variant
takes the same global batch; they are timed round-robin in one process.

On a CPU the devices are forced host devices (``main`` asks for 4 when JAX has not started):
they **share the same cores**, so the figure shows the cost of partitioning (splitting the
batch, all-reducing the gradients), not a speed-up. On a machine with several GPUs the
same command measures real data parallelism.

Run: ``python -m benchmarks.parallel [--tiny] [--repeats N]``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from benchmarks._section import section_main
from benchmarks._timing import time_variants
from benchmarks.mlp import BATCH, TINY_BATCH, TINY_WIDTHS, WIDTHS, mlp

FORCED_HOST_DEVICES = 4
SHARED_CORES_NOTE = (
    "forced host devices share the same CPU cores: the figures show data-parallel overhead, not speed-up"
)


def device_counts(available: int) -> list[int]:
    """1, 2, 4, ... up to ``available``, and ``available`` itself."""
    counts = [1 << k for k in range(available.bit_length()) if 1 << k <= available]
    return counts if counts[-1] == available else [*counts, available]


def run(tiny: bool = False, repeats: int = 10) -> dict[str, Any]:
    """One row per device count (and an FSDP row on the most devices): median step time,
    examples/s and the ratio to one device's examples/s."""
    from jaxbp import train

    widths, batch = (TINY_WIDTHS, TINY_BATCH) if tiny else (WIDTHS, BATCH)
    model = mlp(widths)
    optimizer = train.make_optimizer(1e-3, name="sgd")
    train_step = train.make_train_step(model, optimizer)
    rng = np.random.default_rng(0)
    data = (
        rng.normal(size=(batch, widths[0])).astype(np.float32),
        rng.integers(0, widths[-1], batch),
    )
    initial = train.init_train_state(model, optimizer, data[0].shape, key=0)

    counts = [n for n in device_counts(jax.device_count()) if batch % n == 0]
    setups = {f"{n} devices": train.data_parallel(n) for n in counts}
    if counts[-1] > 1:
        setups[f"{counts[-1]} devices, fsdp"] = train.data_parallel(
            counts[-1], shard_weights_from=1 if tiny else 1 << 16
        )
    variants = {}
    for name, parallel in setups.items():
        step = train.parallel_train_step(train_step, parallel)
        state, sharded = (
            train.shard_state(initial, parallel),
            train.shard_batch(data, parallel),
        )
        variants[name] = lambda step=step, state=state, sharded=sharded: step(state, sharded)
    timings = time_variants(variants, repeats)

    platform = jax.devices()[0].platform
    base = batch / (timings[next(iter(setups))].median_ms * 1e-3)
    rows = []
    for name, parallel in setups.items():
        examples_per_second = batch / (timings[name].median_ms * 1e-3)
        rows.append(
            {
                "setup": name,
                "devices": parallel.num_devices,
                "fsdp": parallel.shard_weights_from is not None,
                "batch": batch,
                "per_device": batch // parallel.num_devices,
                "median_ms": timings[name].median_ms,
                "min_ms": timings[name].min_ms,
                "examples_per_s": examples_per_second,
                "vs_1_device": examples_per_second / base,
            }
        )
    result: dict[str, Any] = {
        "section": "parallel",
        "model": "mlp-" + "-".join(map(str, widths)) + f"-b{batch}",
        "platform": platform,
        "rows": rows,
    }
    if platform == "cpu":
        result["note"] = SHARED_CORES_NOTE
    return result


def main(argv: Sequence[str] | None = None) -> int:
    if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        try:  # on a CPU, several host devices (impossible once JAX has started: then as many as there are)
            jax.config.update("jax_num_cpu_devices", FORCED_HOST_DEVICES)
        except RuntimeError:
            pass
    code = section_main("parallel", run, argv)
    if jax.devices()[0].platform == "cpu":
        print(f"note: {SHARED_CORES_NOTE}")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
