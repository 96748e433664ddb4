"""Manual VJPs vs ``jax.grad`` through the reference math, measured in one process.

For each MLP configuration it reports:
  * step_ms: one jit-compiled SGD training step (loss, gradients, update), manual and
    autodiff-through-reference, and their ratio;
  * fwd_bwd_over_fwd: time of loss+gradients over time of the loss alone (manual);
  * residual_bytes: bytes saved for the backward pass (``saved_residuals``), both ways;
  * temp_bytes: compiled temporary memory of the gradient function (XLA's
    ``memory_analysis``), both ways;
  * torch_step_ms: the same model and step in PyTorch eager, when torch is installed.

Usage: python benchmarks/manual_vs_autodiff.py [--tiny] [--out results/benchmarks/manual_vs_autodiff.json]
Prints a table and writes JSON (refuses to overwrite an existing file unless --overwrite).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import platform
import sys
import time
from collections.abc import Callable

import jax
import numpy as np
from jax._src.ad_checkpoint import saved_residuals

from jaxbp import models, nn, ops
from jaxbp.gradcheck import strip_custom_vjps


@dataclasses.dataclass(frozen=True)
class Config:
    name: str
    activation: str
    depth: int
    width: int
    batch: int
    features: int = 64
    classes: int = 10


FULL = (
    Config("mlp-relu-4x512", "relu", 4, 512, 256),
    Config("mlp-tanh-8x256", "tanh", 8, 256, 256),
    Config("mlp-gelu-4x1024", "gelu", 4, 1024, 512),
    Config("mlp-sigmoid-16x128", "sigmoid", 16, 128, 128),
)
TINY = (Config("tiny-tanh-2x8", "tanh", 2, 8, 4, features=3, classes=2),)


def _median_ms(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median wall time of each function, measured round-robin so that drift in the
    machine's speed (warm-up, frequency, other load) affects every variant alike."""
    for fn in fns.values():
        jax.block_until_ready(fn())  # compile and warm up
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            jax.block_until_ready(fn())
            times[name].append(time.perf_counter() - start)
    return {name: 1e3 * float(np.median(values)) for name, values in times.items()}


def _bytes(avals) -> int:
    return int(sum(np.prod(a.shape) * np.dtype(a.dtype).itemsize for a in avals))


def _torch_step_ms(config: Config, params, x, labels, repeats: int) -> float | None:
    try:
        import torch
    except ImportError:
        return None
    layers = jax.tree_util.tree_leaves(params, is_leaf=lambda t: isinstance(t, dict) and "w" in t)
    weights = [(torch.tensor(np.asarray(p["w"]), requires_grad=True), torch.tensor(np.asarray(p["b"]), requires_grad=True)) for p in layers]
    act = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "gelu": torch.nn.functional.gelu}[config.activation]
    xt, yt = torch.tensor(np.asarray(x)), torch.tensor(np.asarray(labels), dtype=torch.long)

    def step():
        h = xt
        for i, (w, b) in enumerate(weights):
            h = h @ w + b
            if i < len(weights) - 1:
                h = act(h)
        loss = torch.nn.functional.cross_entropy(h, yt)
        grads = torch.autograd.grad(loss, [t for pair in weights for t in pair])
        with torch.no_grad():
            for t, g in zip([t for pair in weights for t in pair], grads):
                t.sub_(1e-3 * g)
        return loss

    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def measure(config: Config, repeats: int) -> dict:
    network = models.mlp([config.width] * config.depth + [config.classes], config.activation, "he_normal")
    key_params, key_x, key_y = jax.random.split(jax.random.key(0), 3)
    params, _ = network.init(key_params, (config.batch, config.features))
    x = jax.random.normal(key_x, (config.batch, config.features))
    labels = jax.random.randint(key_y, (config.batch,), 0, config.classes)

    def loss_manual(params, x):
        return ops.softmax_cross_entropy(network.apply(params, x), labels)

    loss_reference = strip_custom_vjps(loss_manual)

    def sgd_step(loss_fn):
        @jax.jit
        def step(params, x):
            loss, grads = jax.value_and_grad(loss_fn)(params, x)
            return jax.tree_util.tree_map(lambda p, g: p - 1e-3 * g, params, grads), loss

        return step

    manual_step, reference_step = sgd_step(loss_manual), sgd_step(loss_reference)
    forward = jax.jit(loss_manual)
    grad_manual, grad_reference = jax.jit(jax.grad(loss_manual)), jax.jit(jax.grad(loss_reference))
    for a, b in zip(jax.tree_util.tree_leaves(grad_manual(params, x)), jax.tree_util.tree_leaves(grad_reference(params, x))):
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=1e-5)  # same gradients, else the timing means nothing

    medians = _median_ms(
        {
            "manual": lambda: manual_step(params, x),
            "reference": lambda: reference_step(params, x),
            "forward": lambda: forward(params, x),
            "grad": lambda: grad_manual(params, x),
        },
        repeats,
    )
    manual_ms, reference_ms, forward_ms, grad_ms = (medians[k] for k in ("manual", "reference", "forward", "grad"))

    def temp_bytes(fn):
        return int(fn.lower(params, x).compile().memory_analysis().temp_size_in_bytes)

    torch_ms = _torch_step_ms(config, params, x, labels, repeats)
    return {
        "config": dataclasses.asdict(config),
        "step_ms_manual": manual_ms,
        "step_ms_reference_autodiff": reference_ms,
        "manual_over_autodiff": manual_ms / reference_ms,
        "fwd_ms": forward_ms,
        "fwd_bwd_ms": grad_ms,
        "fwd_bwd_over_fwd": grad_ms / forward_ms,
        "residual_bytes_manual": _bytes(a for a, _ in saved_residuals(loss_manual, params, x)),
        "residual_bytes_autodiff": _bytes(a for a, _ in saved_residuals(loss_reference, params, x)),
        "temp_bytes_manual": temp_bytes(grad_manual),
        "temp_bytes_autodiff": temp_bytes(grad_reference),
        "torch_step_ms": torch_ms,
        "jaxbp_over_torch": None if torch_ms is None else manual_ms / torch_ms,
    }


COLUMNS = (
    ("config", lambda r: r["config"]["name"]),
    ("manual ms", lambda r: f"{r['step_ms_manual']:.3f}"),
    ("autodiff ms", lambda r: f"{r['step_ms_reference_autodiff']:.3f}"),
    ("manual/autodiff", lambda r: f"{r['manual_over_autodiff']:.2f}"),
    ("fwd+bwd/fwd", lambda r: f"{r['fwd_bwd_over_fwd']:.2f}"),
    ("residual KiB m/a", lambda r: f"{r['residual_bytes_manual'] / 1024:.0f}/{r['residual_bytes_autodiff'] / 1024:.0f}"),
    ("temp KiB m/a", lambda r: f"{r['temp_bytes_manual'] / 1024:.0f}/{r['temp_bytes_autodiff'] / 1024:.0f}"),
    ("torch ms", lambda r: "n/a" if r["torch_step_ms"] is None else f"{r['torch_step_ms']:.3f}"),
)


def format_table(results: list[dict]) -> str:
    rows = [[name for name, _ in COLUMNS]] + [[cell(r) for _, cell in COLUMNS] for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="one tiny configuration (for tests)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("results/benchmarks/manual_vs_autodiff.json"))
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    args = parser.parse_args(argv)
    if args.out.exists() and not args.overwrite:
        parser.error(f"{args.out} exists; pass --overwrite to replace it or choose another --out")
    results = []
    for config in TINY if args.tiny else FULL:
        print(f"measuring {config.name} ...", file=sys.stderr, flush=True)
        results.append(measure(config, args.repeats))
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), jax {jax.__version__}")
    print(format_table(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"device": jax.devices()[0].device_kind, "backend": jax.default_backend(), "jax": jax.__version__, "python": platform.python_version(), "results": results}
    args.out.write_text(json.dumps(payload, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
