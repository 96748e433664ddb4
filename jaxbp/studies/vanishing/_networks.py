r"""The study's networks: each setting is a :class:`NetworkSpec`, resolved to its weight
variances and built as an MLP.

The settings without a remedy carry ``baseline=True`` (the report marks them by that field,
never by label text). Each setting draws its own random keys (:func:`setting_key`), so no two
settings share weights: ReLU naive, Glorot and He with shared keys would be the same networks
rescaled (ReLU is positively homogeneous).
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from typing import Any, NamedTuple

import jax

from jaxbp import init as initializers
from jaxbp import nn, theory
from jaxbp.models import mlp
from jaxbp.studies.vanishing._config import EXTRA_INITS, INIT_SCHEMES, Laws


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
        if self.init not in INIT_SCHEMES + EXTRA_INITS:
            raise ValueError(f"NetworkSpec: unknown init {self.init!r}; choose one of {INIT_SCHEMES + EXTRA_INITS}")
        if self.init in EXTRA_INITS and self.sigma_w2 is None:
            raise ValueError(f"NetworkSpec: init={self.init!r} needs sigma_w2")

    @property
    def name(self) -> str:
        """A short identifier, e.g. ``"sigmoid-glorot-residual"`` or ``"tanh-orthogonal-sw2=1.03-sb2=4.7e-06"``."""
        init = self.init
        if self.init in EXTRA_INITS:
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
