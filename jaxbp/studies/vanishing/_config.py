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


def _check_ints(owner: str, name: str, values: Sequence[int], minimum: int = 1) -> None:
    if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in values):
        raise StudyConfigError(f"{owner}: {name} must be non-empty ints >= {minimum}, got {values!r}")


def _check_positive(owner: str, name: str, values: Sequence[float]) -> None:
    if not values or any(not v > 0 for v in values):
        raise StudyConfigError(f"{owner}: {name} must be non-empty and positive, got {values!r}")


def _check_fields(config: Any, ints: dict[str, int] | None = None, positive: Sequence[str] = ()) -> None:
    """``ints``: field -> minimum (a tuple field is checked element-wise); ``positive``: float fields or tuples > 0.
    Seed counts have minimum 2 (a standard error needs two samples), depths 4 unless stated."""
    owner = type(config).__name__
    for name, minimum in (ints or {}).items():
        value = getattr(config, name)
        _check_ints(owner, name, value if isinstance(value, tuple) else (value,), minimum)
    for name in positive:
        value = getattr(config, name)
        _check_positive(owner, name, value if isinstance(value, tuple) else (value,))


@dataclasses.dataclass(frozen=True)
class Laws:
    """Settings every section shares: the naive init's standard deviation, the bias variance of the
    critical and exploding settings, and the fraction of layers (steps) the rate fits skip at each end."""

    naive_stddev: float = 0.01
    critical_sigma_b2: float = 0.05
    fit_skip_fraction: float = 0.1

    def __post_init__(self) -> None:
        _check_fields(self, positive=("naive_stddev",))
        if self.critical_sigma_b2 < 0:
            raise StudyConfigError(f"Laws: critical_sigma_b2 must be >= 0, got {self.critical_sigma_b2}")
        if not 0.0 <= self.fit_skip_fraction < 0.5:
            raise StudyConfigError(f"Laws: fit_skip_fraction must lie in [0, 0.5), got {self.fit_skip_fraction}")


@dataclasses.dataclass(frozen=True)
class GridConfig:
    """The gradient grid: ``depths`` x ``activations`` x ``inits``, ``width``-wide, ``batch_size`` digits
    images, ``seeds`` networks per setting (vmapped), float64; the remedies use the same width, batch and seeds."""

    depths: tuple[int, ...] = (10, 50)
    activations: tuple[str, ...] = ACTIVATIONS
    inits: tuple[str, ...] = INIT_SCHEMES
    width: int = 128
    batch_size: int = 32
    seeds: int = 16

    def __post_init__(self) -> None:
        _check_fields(self, {"depths": 4, "width": 1, "batch_size": 1, "seeds": 2})
        for name, allowed in (("activations", ACTIVATIONS), ("inits", INIT_SCHEMES)):
            values = getattr(self, name)
            if not values or [v for v in values if v not in allowed]:
                raise StudyConfigError(f"GridConfig: {name} must be a non-empty subset of {allowed}, got {values!r}")


@dataclasses.dataclass(frozen=True)
class RemediesConfig:
    """Remedies and the exploding profile at ``depth``; the exploding network is tanh at ``exploding_sigma_w2``."""

    depth: int = 50
    exploding_sigma_w2: float = 4.0

    def __post_init__(self) -> None:
        _check_fields(self, {"depth": 4}, ("exploding_sigma_w2",))


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """Training curves and clipping: ``depth`` x ``width`` networks, SGD with momentum 0.9, ``seeds`` seeds;
    clipping trains the exploding network over ``clipping_learning_rates`` with and without clipping to
    ``clip_norm``, plus the learning-rate-matched control."""

    depth: int = 20
    width: int = 64
    epochs: int = 10
    batch_size: int = 64
    seeds: int = 4
    learning_rate: float = 0.01
    clip_norm: float = 1.0
    clipping_learning_rates: tuple[float, ...] = (0.001, 0.003, 0.01, 0.03, 0.1)

    def __post_init__(self) -> None:
        _check_fields(
            self,
            {"depth": 4, "width": 1, "epochs": 1, "batch_size": 1, "seeds": 2},
            ("learning_rate", "clip_norm", "clipping_learning_rates"),
        )


@dataclasses.dataclass(frozen=True)
class SpectraConfig:
    """Jacobian spectra at ``depths``, width ``width``, tanh on the critical line at ``q_stars`` and ReLU + He."""

    depths: tuple[int, ...] = (10, 50, 200)
    width: int = 100
    q_stars: tuple[float, ...] = (1 / 64, 0.25, 1.0)
    seeds: int = 2

    def __post_init__(self) -> None:
        _check_fields(self, {"depths": 2, "width": 1, "seeds": 2}, ("q_stars",))
        if list(self.depths) != sorted(set(self.depths)):
            raise StudyConfigError(f"SpectraConfig: depths must increase, got {self.depths!r}")


@dataclasses.dataclass(frozen=True)
class SignalConfig:
    """Signal propagation at ``sigma_w2s`` (tanh; 0.0 stands for the critical value), depth ``depth``, ``width`` units."""

    depth: int = 30
    width: int = 128
    sigma_w2s: tuple[float, ...] = (1.2, 0.0, 4.0)
    seeds: int = 8

    def __post_init__(self) -> None:
        _check_fields(self, {"depth": 4, "width": 1, "seeds": 2})
        if not self.sigma_w2s or any(v < 0 for v in self.sigma_w2s):
            raise StudyConfigError(f"SignalConfig: sigma_w2s must be non-empty and >= 0, got {self.sigma_w2s!r}")


@dataclasses.dataclass(frozen=True)
class FiniteWidthConfig:
    """``widths`` x ``depths``, ``seeds`` single-input networks, against ``reference_factor`` times as many
    exact width-N reference networks."""

    widths: tuple[int, ...] = (32, 64, 128)
    depths: tuple[int, ...] = (20,)
    seeds: int = 64
    reference_factor: int = 2

    def __post_init__(self) -> None:
        _check_fields(self, {"widths": 2, "depths": 4, "seeds": 2, "reference_factor": 1})


@dataclasses.dataclass(frozen=True)
class TrainabilityConfig:
    """Descriptive only (no verdict): tanh accuracy on digits over ``sigma_w2s`` x ``depths`` after ``steps``
    SGD steps at ``learning_rate`` on batches of ``batch_size``, width ``width``."""

    depths: tuple[int, ...] = (10, 30, 60)
    sigma_w2s: tuple[float, ...] = (1.0, 1.5, 1.76, 2.25, 3.0, 4.0)
    width: int = 64
    steps: int = 150
    learning_rate: float = 0.01
    batch_size: int = 64
    seeds: int = 2

    def __post_init__(self) -> None:
        _check_fields(
            self, {"depths": 4, "width": 1, "steps": 1, "batch_size": 1, "seeds": 2}, ("sigma_w2s", "learning_rate")
        )


@dataclasses.dataclass(frozen=True)
class AcrossTimeConfig:
    """``||dL/dh_t||`` over ``steps`` steps of ``width``-unit cells (``seeds`` seeds, ``batch`` sequences of
    ``features`` inputs): the tanh RNN at ``rnn_sigma_w2s`` (input variance ``rnn_sigma_x2``), the LSTM at
    ``lstm_forget_biases``; the width control repeats the RNN at ``control_sigma_w2s`` with ``control_widths`` units."""

    steps: int = 40
    width: int = 64
    features: int = 8
    batch: int = 8
    seeds: int = 32
    rnn_sigma_w2s: tuple[float, ...] = (0.5, 1.0, 1.5, 2.5, 4.0)
    rnn_sigma_x2: float = 0.25
    lstm_forget_biases: tuple[float, ...] = (-2.0, 0.0, 1.0, 3.0)
    control_widths: tuple[int, ...] = (32, 128)
    control_sigma_w2s: tuple[float, ...] = (0.5, 1.0, 4.0)

    def __post_init__(self) -> None:
        _check_fields(
            self,
            {"steps": 4, "width": 1, "features": 1, "batch": 1, "seeds": 2, "control_widths": 1},
            ("rnn_sigma_w2s", "rnn_sigma_x2", "control_sigma_w2s"),
        )
        if not self.lstm_forget_biases:
            raise StudyConfigError("AcrossTimeConfig: lstm_forget_biases must be non-empty")


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """Everything the study does (all of it is written to ``results.json``): the shared :class:`Laws`,
    one config per section (each section receives only its own and the laws), and the base ``seed``.
    ``trainability`` is ``None`` to leave the descriptive trainability grid out."""

    laws: Laws = Laws()
    grid: GridConfig = GridConfig()
    remedies: RemediesConfig = RemediesConfig()
    training: TrainingConfig = TrainingConfig()
    spectra: SpectraConfig = SpectraConfig()
    signal: SignalConfig = SignalConfig()
    finite_width: FiniteWidthConfig = FiniteWidthConfig()
    trainability: TrainabilityConfig | None = None
    across_time: AcrossTimeConfig = AcrossTimeConfig()
    seed: int = 0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == "seed":
                if isinstance(value, bool) or not isinstance(value, int):
                    raise StudyConfigError(f"StudyConfig: seed must be an int, got {value!r}")
            elif not (value is None and field.name == "trainability") and type(value).__name__ not in str(field.type):
                raise StudyConfigError(f"StudyConfig: {field.name} must be a {field.type}, got {value!r}")

    def replace(self, **changes: Any) -> StudyConfig:
        """A copy with whole sections or, as ``section={...}``, some of a section's fields replaced."""
        merged = {
            name: dataclasses.replace(getattr(self, name), **value) if isinstance(value, dict) else value
            for name, value in changes.items()
        }
        return dataclasses.replace(self, **merged)

    def to_dict(self) -> dict[str, Any]:
        def plain(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            return list(value) if isinstance(value, tuple) else value

        return plain(dataclasses.asdict(self))


#: ``default``: <= 3 minutes on 2 CPU cores.  ``full``: depth 100, wider nets, finer grids and the
#: trainability grid (<= 30 minutes).  ``tiny``: seconds; for the test suite.
PRESETS: dict[str, StudyConfig] = {
    "default": StudyConfig(),
    "full": StudyConfig(
        grid=GridConfig(depths=(10, 20, 50, 100), width=256, batch_size=64, seeds=32),
        training=TrainingConfig(
            width=128, epochs=30, seeds=8, clipping_learning_rates=(0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3)
        ),
        spectra=SpectraConfig(depths=(10, 25, 50, 100, 200), width=400, q_stars=(1 / 64, 0.046, 0.25, 1.0), seeds=4),
        signal=SignalConfig(depth=60, width=256, seeds=16),
        finite_width=FiniteWidthConfig(widths=(64, 128, 256, 512), depths=(10, 30, 60), seeds=64, reference_factor=4),
        trainability=TrainabilityConfig(
            depths=(10, 25, 50, 75, 100, 150),
            sigma_w2s=(1.0, 1.25, 1.5, 1.76, 2.0, 2.5, 3.0, 3.5, 4.0),
            width=128,
            steps=300,
            seeds=2,
        ),
        across_time=AcrossTimeConfig(
            steps=100,
            width=128,
            seeds=64,
            rnn_sigma_w2s=(0.5, 0.8, 1.0, 1.2, 1.5, 2.0, 2.5, 3.0),
            lstm_forget_biases=(-2.0, -1.0, 0.0, 1.0, 2.0, 3.0),
            control_widths=(32, 64, 256),
        ),
    ),
    "tiny": StudyConfig(
        grid=GridConfig(
            depths=(4,), activations=("tanh", "relu"), inits=("glorot", "he"), width=16, batch_size=4, seeds=4
        ),
        remedies=RemediesConfig(depth=4),
        training=TrainingConfig(
            depth=4, width=16, epochs=1, batch_size=128, seeds=2, clipping_learning_rates=(0.01, 0.1)
        ),
        spectra=SpectraConfig(depths=(2, 4), width=12, q_stars=(0.25,)),
        signal=SignalConfig(depth=4, width=16, seeds=2),
        finite_width=FiniteWidthConfig(widths=(8, 16), depths=(4,), seeds=4),
        trainability=TrainabilityConfig(depths=(4,), sigma_w2s=(1.0, 3.0), width=16, steps=3, batch_size=128),
        across_time=AcrossTimeConfig(
            steps=6,
            width=8,
            features=4,
            batch=2,
            seeds=4,
            rnn_sigma_w2s=(0.5, 2.5),
            lstm_forget_biases=(0.0, 3.0),
            control_widths=(4,),
            control_sigma_w2s=(2.5,),
        ),
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


def resolve_init(spec: NetworkSpec, width: int, laws: Laws) -> ResolvedInit:
    r"""The :class:`jaxbp.init.DenseInit` of ``spec`` and its :math:`(\sigma_w^2, \sigma_b^2)`.

    For a ``width x width`` layer: naive :math:`\sigma_w^2 = s^2 N`, Glorot
    :math:`N\cdot 2/(N+N) = 1`, He 2, orthogonal (gain 1) 1, critical
    :math:`\sigma_w^{2*}(\sigma_b^2)` from :func:`jaxbp.theory.critical_sigma_w2`.
    """
    if spec.init == "naive":
        return ResolvedInit(
            initializers.dense_init("normal", stddev=laws.naive_stddev),
            laws.naive_stddev**2 * width,
            0.0,
        )
    if spec.init == "glorot":
        return ResolvedInit(initializers.dense_init("glorot_normal"), 1.0, 0.0)
    if spec.init == "he":
        return ResolvedInit(initializers.dense_init("he_normal"), 2.0, 0.0)
    if spec.init == "orthogonal":
        return ResolvedInit(initializers.dense_init("orthogonal", gain=1.0), 1.0, 0.0)
    if spec.init == "critical":
        sigma_b2 = laws.critical_sigma_b2
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
