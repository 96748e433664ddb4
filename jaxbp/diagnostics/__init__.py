"""Diagnostics from the hand-written backward pass: per-layer gradient statistics
(:mod:`jaxbp.diagnostics._layers`), gradient norms across time (:mod:`jaxbp.diagnostics._time`)
and the bytes a backward pass keeps (:mod:`jaxbp.diagnostics._memory`), one module per kind
of measurement."""

from jaxbp.diagnostics._layers import (
    SATURATION_RULES,
    WEIGHTED_KINDS,
    GradientStatistics,
    gradient_statistics,
    saturated,
    weighted_layer_params,
)
from jaxbp.diagnostics._memory import nbytes, residual_bytes
from jaxbp.diagnostics._time import hidden_gradient_norms

__all__ = [
    "SATURATION_RULES",
    "WEIGHTED_KINDS",
    "GradientStatistics",
    "gradient_statistics",
    "hidden_gradient_norms",
    "nbytes",
    "residual_bytes",
    "saturated",
    "weighted_layer_params",
]
