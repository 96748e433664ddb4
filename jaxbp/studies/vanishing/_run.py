"""Running the study: sections in order, timing, output directory, command line."""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp import data, theory
from jaxbp.studies.vanishing import _across_time, _gradients, _spectra, _training
from jaxbp.studies.vanishing._config import PRESETS, StudyConfig, StudyConfigError
from jaxbp.studies.vanishing._progress import reporting
from jaxbp.studies.vanishing._settings import exploding_spec, grid_specs, remedy_specs, signal_sigma_w2s, training_specs

DEFAULT_OUT = Path("results") / "vanishing"
Progress = Callable[[str], None]


def prepare_output_dir(out_dir: str | os.PathLike, overwrite: bool = False) -> Path:
    """Create ``out_dir``; refuse (``FileExistsError``) if it already holds files, unless
    ``overwrite`` -- then only the study's own files (:data:`OUTPUT_FILES`) are replaced."""
    from jaxbp.studies.vanishing._report import OUTPUT_FILES

    path = Path(out_dir)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"vanishing study: output path {path} exists and is not a directory")
    if path.is_dir() and any(path.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"vanishing study: {path} already holds results; choose a new --out directory "
                "or pass --overwrite to replace the study's files there"
            )
        for name in OUTPUT_FILES:
            (path / name).unlink(missing_ok=True)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _stderr_progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _environment() -> dict[str, Any]:
    return {
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def _xi_c_curve(sigma_w2s: Sequence[float], sigma_b2: float) -> dict[str, list[float]]:
    """:math:`\\xi_c(\\sigma_w^2)` on a fine grid over the heatmap's range (for the 6 xi_c overlay)."""
    grid = np.linspace(min(sigma_w2s), max(sigma_w2s), 41)
    return {
        "sigma_w2": grid.tolist(),
        "xi_c": [theory.correlation_depth_scale(float(s), sigma_b2, "tanh") for s in grid],
    }


#: The study's sections, in the order they run; each is :func:`run_section` of its name.
SECTIONS = (
    "gradient_grid",
    "remedies",
    "finite_width",
    "spectra",
    "signal",
    "across_time",
    "training",
    "clipping",
    "trainability",
)
_MEASUREMENTS = SECTIONS[:6]  # float64, on fixed digits inputs


def sections_of(config: StudyConfig) -> tuple[str, ...]:
    """The sections ``config`` runs: all of :data:`SECTIONS`, the descriptive trainability grid only if asked."""
    return tuple(name for name in SECTIONS if name != "trainability" or config.trainability is not None)


def run_section(name: str, config: StudyConfig, key: jax.Array) -> dict[str, Any]:
    """One section of the study: the entries it adds to ``results.json``.  Each section function
    receives its own part of ``config``, the shared laws and the base seed, nothing else."""
    if name not in SECTIONS:
        raise ValueError(f"vanishing study: unknown section {name!r}; sections: {', '.join(SECTIONS)}")
    if name in _MEASUREMENTS:
        digits_train = data.digits("train", dtype=np.float64)[0]
        with jax.enable_x64(True):
            return _measurement(name, config, key, digits_train)
    dataset, laws = data.digits(), config.laws
    if name == "training":
        return {
            "training": _training.training_curves(
                training_specs(laws), config.training, laws, dataset, key, config.seed
            )
        }
    if name == "clipping":
        spec = exploding_spec(config.remedies, laws)
        return {"clipping": _training.clipping_study(spec, config.training, laws, dataset, key, config.seed)}
    heat_config = config.trainability
    if heat_config is None:
        raise ValueError("vanishing study: this configuration has no trainability section (trainability=None)")
    heat = _training.trainability(
        heat_config,
        laws,
        dataset,
        key,
        config.seed,
        lambda s: theory.correlation_depth_scale(s, laws.critical_sigma_b2, "tanh"),
    )
    return {"trainability": {**heat, "xi_c_curve": _xi_c_curve(heat_config.sigma_w2s, laws.critical_sigma_b2)}}


def _measurement(name: str, config: StudyConfig, key: jax.Array, digits_train: np.ndarray) -> dict[str, Any]:
    grid, laws = config.grid, config.laws
    x = jnp.asarray(digits_train[: grid.batch_size])
    if name == "gradient_grid":
        records = [
            _gradients.measure_gradients(s, d, grid, laws, x, key) for d in grid.depths for s in grid_specs(grid)
        ]
        return {"grid": records}
    if name == "remedies":  # the grid's width, batch and seeds at the remedies' depth
        remedies = [
            _gradients.measure_gradients(s, config.remedies.depth, grid, laws, x, key)
            for s in remedy_specs(laws) + [exploding_spec(config.remedies, laws)]
        ]
        return {"remedies": remedies[:-1], "exploding_profile": remedies[-1]}
    if name == "finite_width":
        return {"finite_width": _gradients.finite_width(config.finite_width, laws, jnp.asarray(digits_train[:1]), key)}
    if name == "spectra":
        return {"spectra": _spectra.jacobian_spectra(config.spectra, laws, key)}
    if name == "signal":
        x_pair, sigma_w2s = jnp.asarray(digits_train[:2]), signal_sigma_w2s(config.signal, laws)
        return {"signal": _spectra.signal_propagation(config.signal, laws, x_pair, sigma_w2s, key)}
    return {"across_time": _across_time.across_time(config.across_time, laws, key)}


def run_study(
    config: StudyConfig,
    out_dir: str | os.PathLike,
    *,
    overwrite: bool = False,
    progress: Progress | None = _stderr_progress,
) -> dict[str, Any]:
    """Run every section, write the outputs into ``out_dir`` (see :data:`OUTPUT_FILES`), return the results."""
    from jaxbp.studies.vanishing import (
        _report,  # matplotlib is imported only when needed
    )

    out = prepare_output_dir(out_dir, overwrite)
    start = time.perf_counter()
    timing: dict[str, float] = {}

    def say(message: str) -> None:
        if progress is not None:
            progress(f"[{time.perf_counter() - start:7.1f}s] {message}")

    def section(name: str, fn: Callable[[], Any]) -> Any:
        began = time.perf_counter()
        with reporting(say, name):
            value = fn()
        timing[f"{name}_s"] = time.perf_counter() - began
        say(f"{name} done in {timing[f'{name}_s']:.1f} s")
        return value

    key = jax.random.PRNGKey(config.seed)
    results: dict[str, Any] = {
        "config": config.to_dict(),
        "environment": _environment(),
    }
    for name in sections_of(config):
        results.update(section(name, lambda: run_section(name, config, key)))  # noqa: B023  (called at once)
    results["timing"] = timing
    section("report", lambda: _report.write_outputs(results, out))
    timing["total_s"] = time.perf_counter() - start
    _report.write_outputs(results, out, figures=False)  # again, with the final timing
    say(f"done: wrote {len(_report.OUTPUT_FILES)} files to {out}")
    return results


# ============================================================================ command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The study's options (shared by ``jaxbp vanishing`` and ``experiments/vanishing_gradients.py``)."""
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--full",
        action="store_true",
        help="depth 100, wider networks, finer grids and more seeds elsewhere (29 minutes and 16 GB of memory on 2 CPU cores)",
    )
    size.add_argument(
        "--tiny",
        action="store_true",
        help="a smoke run in seconds (tiny widths and depths)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"output directory (default: a new {DEFAULT_OUT}/run-NNN, numbered after the existing runs); "
        "the study refuses to write into a directory that already holds files, unless --overwrite",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the study's own files in an existing --out directory",
    )
    parser.add_argument(
        "--depths",
        type=int,
        nargs="+",
        help="override the depths L of the gradient grid (each >= 4)",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        help="override the number of networks per gradient setting (>= 2)",
    )
    parser.add_argument("--width", type=int, help="override the width of the measured networks")
    parser.add_argument("--epochs", type=int, help="override the number of training epochs")
    parser.add_argument("--seed", type=int, help="base random seed (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def config_from_args(args: argparse.Namespace) -> StudyConfig:
    """The preset chosen by ``--full``/``--tiny`` (else ``default``) with the overrides applied."""
    preset = "full" if args.full else "tiny" if args.tiny else "default"
    grid = {"depths": tuple(args.depths) if args.depths else None, "seeds": args.seeds, "width": args.width}
    changes: dict[str, Any] = {"grid": {k: v for k, v in grid.items() if v is not None}}
    if args.width is not None:  # the signal section measures networks of the grid's width
        changes["signal"] = {"width": args.width}
    if args.epochs is not None:
        changes["training"] = {"epochs": args.epochs}
    if args.seed is not None:
        changes["seed"] = args.seed
    return PRESETS[preset].replace(**changes)


def next_run_directory(parent: Path) -> Path:
    """``parent/run-NNN`` numbered one past the highest existing run, so reruns never collide."""
    numbers = [int(p.name[4:]) for p in parent.glob("run-*") if p.name[4:].isdigit()] if parent.is_dir() else []
    return parent / f"run-{max(numbers, default=0) + 1:03d}"


def run(args: argparse.Namespace) -> int:
    """Run the study from parsed arguments; returns the exit status."""
    out = args.out if args.out is not None else next_run_directory(DEFAULT_OUT)
    try:
        config = config_from_args(args)
        results = run_study(
            config,
            out,
            overwrite=args.overwrite,
            progress=None if args.quiet else _stderr_progress,
        )
    except (FileExistsError, StudyConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(
        f"vanishing-gradient study written to {out} in {results['timing']['total_s']:.0f} s; see {Path(out) / 'report.md'}"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="The vanishing/exploding-gradient study, measured against mean-field theory."
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
