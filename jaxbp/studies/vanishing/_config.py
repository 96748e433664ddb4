"""What the study measures: one configuration per section (:class:`StudyConfig`) and the laws
they share; the networks themselves are built in :mod:`._networks`."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

ACTIVATIONS = ("sigmoid", "tanh", "relu")
#: The initializations of the gradient grid (see :func:`resolve_init`).
INIT_SCHEMES = ("naive", "glorot", "he", "orthogonal", "critical")
#: Further initializations for the named settings: Gaussian or orthogonal weights at given variances.
EXTRA_INITS = ("mean_field", "orthogonal_mean_field")


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
#: trainability grid (29 min, 16 GB on 2 cores).  ``tiny``: seconds; for the test suite.
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
