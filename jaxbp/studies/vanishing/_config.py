r"""What the study measures: its configuration, the network settings and their initializers.

Every setting is a :class:`NetworkSpec`; the ones without a remedy carry ``baseline=True``
(the report marks them by that field, never by label text).  Each setting draws its own
random keys (:func:`setting_key`), so no two settings share weights: ReLU naive, Glorot and
He with shared keys would be the same networks rescaled (ReLU is positively homogeneous).
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax

from jaxbp import init as initializers
from jaxbp import nn, theory
from jaxbp.models import mlp

ACTIVATIONS = ("sigmoid", "tanh", "relu")
#: The initializations of the gradient grid (see :func:`resolve_init`).
INIT_SCHEMES = ("naive", "glorot", "he", "orthogonal", "critical")
#: Further initializations for the named settings: Gaussian or orthogonal weights at given variances.
_EXTRA_INITS = ("mean_field", "orthogonal_mean_field")


class StudyConfigError(ValueError):
    """A :class:`StudyConfig` with an invalid value (the CLI reports it without a traceback)."""


def _ints(*values: int) -> tuple[int, ...]:
    return tuple(values)


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """Everything the study does (all of it is written to ``results.json``).

    * Gradient grid: ``depths`` x ``activations`` x ``inits``, ``width``-wide, ``batch_size``
      digits images, ``seeds`` networks per setting (vmapped), float64.  Remedies and the
      exploding profile at ``remedy_depth``.
    * Training: ``train_depth`` x ``train_width`` networks, SGD with momentum 0.9, ``train_seeds``
      seeds; clipping: the exploding network over ``clipping_learning_rates`` with and without
      clipping to ``clip_norm``, plus the learning-rate-matched control.
    * Jacobian spectra at ``spectrum_depths``, width ``spectrum_width``, tanh on the critical line
      at ``spectrum_q_stars`` and ReLU + He.
    * Signal propagation at ``signal_sigma_w2s`` (tanh, ``critical_sigma_b2``), depth ``signal_depth``.
    * Finite width: ``finite_widths`` x ``finite_depths``, ``finite_seeds`` single-input networks,
      against ``finite_reference_factor`` times as many exact width-N reference networks.
    * Trainability (only if ``trainability``; descriptive, no verdict): tanh accuracy on digits over
      ``heat_sigma_w2s`` x ``heat_depths`` after ``heat_steps`` steps, width ``heat_width``.
    * Across time: ``||dL/dh_t||`` over ``time_steps`` steps of ``time_width``-unit cells
      (``time_seeds`` seeds, ``time_batch`` sequences of ``time_features`` inputs): the tanh RNN
      at ``rnn_sigma_w2s`` (input variance ``rnn_sigma_x2``), the LSTM at ``lstm_forget_biases``.
    """

    depths: tuple[int, ...] = (10, 50)
    activations: tuple[str, ...] = ACTIVATIONS
    inits: tuple[str, ...] = INIT_SCHEMES
    width: int = 128
    batch_size: int = 32
    seeds: int = 16
    naive_stddev: float = 0.01
    critical_sigma_b2: float = 0.05
    fit_skip_fraction: float = 0.1
    remedy_depth: int = 50
    exploding_sigma_w2: float = 4.0
    train_depth: int = 20
    train_width: int = 64
    train_epochs: int = 10
    train_batch_size: int = 64
    train_seeds: int = 4
    learning_rate: float = 0.01
    clip_norm: float = 1.0
    clipping_learning_rates: tuple[float, ...] = (0.001, 0.003, 0.01, 0.03, 0.1)
    spectrum_depths: tuple[int, ...] = (10, 50, 200)
    spectrum_width: int = 100
    spectrum_q_stars: tuple[float, ...] = (1 / 64, 0.25, 1.0)
    spectrum_seeds: int = 2
    signal_depth: int = 30
    signal_sigma_w2s: tuple[float, ...] = (
        1.2,
        0.0,
        4.0,
    )  # 0.0 stands for the critical value
    signal_seeds: int = 8
    finite_widths: tuple[int, ...] = (32, 64, 128)
    finite_depths: tuple[int, ...] = (20,)
    finite_seeds: int = 64
    finite_reference_factor: int = 2
    trainability: bool = False
    heat_depths: tuple[int, ...] = (10, 30, 60)
    heat_sigma_w2s: tuple[float, ...] = (1.0, 1.5, 1.76, 2.25, 3.0, 4.0)
    heat_width: int = 64
    heat_steps: int = 150
    heat_learning_rate: float = 0.01
    heat_seeds: int = 2
    time_steps: int = 40
    time_width: int = 64
    time_features: int = 8
    time_batch: int = 8
    time_seeds: int = 32
    rnn_sigma_w2s: tuple[float, ...] = (0.5, 1.0, 1.5, 2.5, 4.0)
    rnn_sigma_x2: float = 0.25
    lstm_forget_biases: tuple[float, ...] = (-2.0, 0.0, 1.0, 3.0)
    seed: int = 0

    def __post_init__(self) -> None:
        def ints(name: str, values: Sequence[int], minimum: int = 1) -> None:
            if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in values):
                raise StudyConfigError(f"StudyConfig: {name} must be non-empty ints >= {minimum}, got {values!r}")

        for name in ("depths", "finite_depths", "heat_depths"):
            ints(name, getattr(self, name), minimum=4)
        ints(
            "remedy_depth/train_depth/signal_depth",
            (self.remedy_depth, self.train_depth, self.signal_depth),
            minimum=4,
        )
        ints("spectrum_depths", self.spectrum_depths, minimum=2)
        if list(self.spectrum_depths) != sorted(set(self.spectrum_depths)):
            raise StudyConfigError(f"StudyConfig: spectrum_depths must increase, got {self.spectrum_depths!r}")
        for name in (
            "width",
            "batch_size",
            "train_width",
            "train_epochs",
            "train_batch_size",
            "spectrum_width",
            "heat_width",
            "heat_steps",
            "time_width",
            "time_features",
            "time_batch",
            "finite_reference_factor",
        ):
            ints(name, (getattr(self, name),))
        for name in (
            "seeds",
            "train_seeds",
            "spectrum_seeds",
            "signal_seeds",
            "finite_seeds",
            "heat_seeds",
            "time_seeds",
        ):
            ints(name, (getattr(self, name),), minimum=2)  # a standard error needs two samples
        ints("time_steps", (self.time_steps,), minimum=4)
        ints("finite_widths", self.finite_widths, minimum=2)
        for name, allowed, values in (
            ("activations", ACTIVATIONS, self.activations),
            ("inits", INIT_SCHEMES, self.inits),
        ):
            if not values or [v for v in values if v not in allowed]:
                raise StudyConfigError(f"StudyConfig: {name} must be a non-empty subset of {allowed}, got {values!r}")
        if not 0.0 <= self.fit_skip_fraction < 0.5:
            raise StudyConfigError(f"StudyConfig: fit_skip_fraction must lie in [0, 0.5), got {self.fit_skip_fraction}")
        for name in (
            "naive_stddev",
            "exploding_sigma_w2",
            "learning_rate",
            "clip_norm",
            "heat_learning_rate",
            "rnn_sigma_x2",
        ):
            if not getattr(self, name) > 0:
                raise StudyConfigError(f"StudyConfig: {name} must be > 0, got {getattr(self, name)}")
        if not self.lstm_forget_biases:
            raise StudyConfigError("StudyConfig: lstm_forget_biases must be non-empty")
        for name in ("clipping_learning_rates", "spectrum_q_stars", "heat_sigma_w2s", "rnn_sigma_w2s"):
            if not getattr(self, name) or any(not v > 0 for v in getattr(self, name)):
                raise StudyConfigError(f"StudyConfig: {name} must be non-empty and positive, got {getattr(self, name)}")
        if not isinstance(self.trainability, bool):
            raise StudyConfigError(f"StudyConfig: trainability must be a bool, got {self.trainability!r}")
        if self.critical_sigma_b2 < 0 or any(v < 0 for v in self.signal_sigma_w2s):
            raise StudyConfigError("StudyConfig: critical_sigma_b2 and signal_sigma_w2s must be >= 0")

    def replace(self, **changes: Any) -> StudyConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


#: ``default``: <= 3 minutes on 2 CPU cores.  ``full``: depth 100, wider nets, finer grids (<= 30 minutes).
#: ``tiny``: seconds; for the test suite.
PRESETS: dict[str, StudyConfig] = {
    "default": StudyConfig(),
    "full": StudyConfig(
        depths=(10, 20, 50, 100),
        width=256,
        train_width=128,
        batch_size=64,
        seeds=32,
        train_epochs=30,
        train_seeds=8,
        clipping_learning_rates=(0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3),
        spectrum_depths=(10, 25, 50, 100, 200),
        spectrum_width=400,
        spectrum_q_stars=(1 / 64, 0.046, 0.25, 1.0),
        spectrum_seeds=4,
        signal_depth=60,
        signal_seeds=16,
        finite_widths=(64, 128, 256, 512),
        finite_depths=(10, 30, 60),
        finite_seeds=64,
        finite_reference_factor=4,
        trainability=True,
        heat_depths=(10, 25, 50, 75, 100, 150),
        heat_sigma_w2s=(1.0, 1.25, 1.5, 1.76, 2.0, 2.5, 3.0, 3.5, 4.0),
        heat_width=128,
        heat_steps=300,
        heat_seeds=2,
        time_steps=100,
        time_width=128,
        time_seeds=64,
        rnn_sigma_w2s=(0.5, 0.8, 1.0, 1.2, 1.5, 2.0, 2.5, 3.0),
        lstm_forget_biases=(-2.0, -1.0, 0.0, 1.0, 2.0, 3.0),
    ),
    "tiny": StudyConfig(
        depths=(4,),
        activations=("tanh", "relu"),
        inits=("glorot", "he"),
        width=16,
        batch_size=4,
        seeds=4,
        remedy_depth=4,
        train_depth=4,
        train_width=16,
        train_epochs=1,
        train_batch_size=128,
        train_seeds=2,
        clipping_learning_rates=(0.01, 0.1),
        spectrum_depths=(2, 4),
        spectrum_width=12,
        spectrum_q_stars=(0.25,),
        signal_depth=4,
        signal_seeds=2,
        finite_widths=(8, 16),
        finite_depths=(4,),
        finite_seeds=4,
        trainability=True,
        heat_depths=(4,),
        heat_sigma_w2s=(1.0, 3.0),
        heat_width=16,
        heat_steps=3,
        time_steps=6,
        time_width=8,
        time_features=4,
        time_batch=2,
        time_seeds=4,
        rnn_sigma_w2s=(0.5, 2.5),
        lstm_forget_biases=(0.0, 3.0),
    ),
}


# ============================================================================ settings


@dataclasses.dataclass(frozen=True)
class NetworkSpec:
    r"""A network family: activation, initialization and architecture (depth comes later).

    ``init`` is one of :data:`INIT_SCHEMES`, ``"mean_field"`` (Gaussian weights of variance
    ``sigma_w2 / N``, biases of variance ``sigma_b2``) or ``"orthogonal_mean_field"``
    (orthogonal weights with gain :math:`\sqrt{\sigma_w^2}`, Gaussian biases).  ``baseline``
    marks the settings without a remedy in the remedies experiment.
    """

    activation: str
    init: str
    residual: bool = False
    batch_norm: bool = False
    sigma_w2: float | None = None
    sigma_b2: float = 0.0
    label: str = ""
    baseline: bool = False

    def __post_init__(self) -> None:
        if self.activation not in nn.ACTIVATIONS:
            raise ValueError(
                f"NetworkSpec: unknown activation {self.activation!r}; choose one of {sorted(nn.ACTIVATIONS)}"
            )
        if self.init not in INIT_SCHEMES + _EXTRA_INITS:
            raise ValueError(f"NetworkSpec: unknown init {self.init!r}; choose one of {INIT_SCHEMES + _EXTRA_INITS}")
        if self.init in _EXTRA_INITS and self.sigma_w2 is None:
            raise ValueError(f"NetworkSpec: init={self.init!r} needs sigma_w2")

    @property
    def name(self) -> str:
        """A short identifier, e.g. ``"sigmoid-glorot-residual"`` or ``"tanh-orthogonal-sw2=1.03-sb2=4.7e-06"``."""
        init = self.init
        if self.init in _EXTRA_INITS:
            init = f"{'orthogonal' if self.init.startswith('orthogonal') else 'gaussian'}-sw2={self.sigma_w2:.4g}-sb2={self.sigma_b2:.2g}"
        return "-".join([self.activation, init] + ["residual"] * self.residual + ["batchnorm"] * self.batch_norm)

    @property
    def has_mean_field_theory(self) -> bool:
        """Plain networks only: the theory does not cover skip connections or normalization."""
        return not (self.residual or self.batch_norm)


class ResolvedInit(NamedTuple):
    """The initializer of a spec and the mean-field variances of its ``width x width`` layers."""

    dense: initializers.DenseInit
    sigma_w2: float
    sigma_b2: float


def resolve_init(spec: NetworkSpec, width: int, config: StudyConfig) -> ResolvedInit:
    r"""The :class:`jaxbp.init.DenseInit` of ``spec`` and its :math:`(\sigma_w^2, \sigma_b^2)`.

    For a ``width x width`` layer: naive :math:`\sigma_w^2 = s^2 N`, Glorot
    :math:`N\cdot 2/(N+N) = 1`, He 2, orthogonal (gain 1) 1, critical
    :math:`\sigma_w^{2*}(\sigma_b^2)` from :func:`jaxbp.theory.critical_sigma_w2`.
    """
    if spec.init == "naive":
        return ResolvedInit(
            initializers.dense_init("normal", stddev=config.naive_stddev),
            config.naive_stddev**2 * width,
            0.0,
        )
    if spec.init == "glorot":
        return ResolvedInit(initializers.dense_init("glorot_normal"), 1.0, 0.0)
    if spec.init == "he":
        return ResolvedInit(initializers.dense_init("he_normal"), 2.0, 0.0)
    if spec.init == "orthogonal":
        return ResolvedInit(initializers.dense_init("orthogonal", gain=1.0), 1.0, 0.0)
    if spec.init == "critical":
        sigma_b2 = config.critical_sigma_b2
        sigma_w2 = theory.critical_sigma_w2(sigma_b2, spec.activation)
        return ResolvedInit(initializers.mean_field(sigma_w2, sigma_b2), sigma_w2, sigma_b2)
    assert spec.sigma_w2 is not None
    if spec.init == "mean_field":
        return ResolvedInit(
            initializers.mean_field(spec.sigma_w2, spec.sigma_b2),
            spec.sigma_w2,
            spec.sigma_b2,
        )
    weights = initializers.orthogonal(math.sqrt(spec.sigma_w2))
    return ResolvedInit(
        initializers.DenseInit(weights, initializers.normal(math.sqrt(spec.sigma_b2))),
        spec.sigma_w2,
        spec.sigma_b2,
    )


def build_network(
    spec: NetworkSpec,
    depth: int,
    width: int,
    outputs: int,
    dense: initializers.DenseInit,
    **options: Any,
) -> nn.Layer:
    """``models.mlp([width] * (depth - 1) + [outputs])``: ``depth`` dense layers, taps ``z1..z{depth}``."""
    sizes = [width] * (depth - 1) + [outputs]
    return mlp(
        sizes,
        spec.activation,
        dense,
        residual_blocks=spec.residual,
        batch_norm=spec.batch_norm,
        **options,
    )


def setting_key(root: jax.Array, *parts: Any) -> jax.Array:
    """An independent key for one setting: ``root`` folded with a stable hash of ``parts``."""
    return jax.random.fold_in(root, zlib.crc32(repr(parts).encode()) & 0x7FFFFFFF)
