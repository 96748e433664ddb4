"""Diagnostics from the hand-written backward pass: per-layer gradient statistics
(:mod:`jaxbp.diagnostics._layers`), one module per kind of measurement."""

from jaxbp.diagnostics._layers import (
    SATURATION_RULES,
    WEIGHTED_KINDS,
    GradientStatistics,
    gradient_statistics,
    saturated,
    weighted_layer_params,
)
from jaxbp.diagnostics._time import hidden_gradient_norms

__all__ = [
    "SATURATION_RULES",
    "WEIGHTED_KINDS",
    "GradientStatistics",
    "gradient_statistics",
    "hidden_gradient_norms",
    "saturated",
    "weighted_layer_params",
]
