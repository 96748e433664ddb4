"""Gradient checking people can trust on their own ops.

* :func:`check_gradients`: a function's hand-written derivatives (``custom_vjp`` or
  ``custom_jvp``) vs ``jax.grad`` through its reference and vs central differences, per
  element ``|a - b| <= atol + rtol |b|``, first or second order.
* :func:`sweep_op`: everything an op must satisfy, on drawn arguments -- the one function
  users and jaxbp's own op catalog (:mod:`jaxbp.gradcheck.catalog`) run.
* :func:`assert_fully_manual` / :func:`find_non_manual`: a walk of the forward jaxpr that
  names every derivative autodiff would write rather than a hand-written rule.
* :func:`strip_custom_rules`: the reference twin of any function.
"""

from jaxbp.gradcheck._check import check_gradients, hvp, numerical_gradient, relative_error
from jaxbp.gradcheck._compare import (
    NUMERICAL_TOLERANCE,
    REFERENCE_TOLERANCE,
    GradientReport,
    LeafComparison,
    Mismatch,
    Tolerance,
)
from jaxbp.gradcheck._fully_manual import NonManualPrimitive, assert_fully_manual, find_non_manual
from jaxbp.gradcheck._reference import count_custom_rules, strip_custom_rules, strip_custom_vjps
from jaxbp.gradcheck.sweep import FLOAT32_TOLERANCE, SweepReport, sweep_op

__all__ = [
    "FLOAT32_TOLERANCE",
    "NUMERICAL_TOLERANCE",
    "REFERENCE_TOLERANCE",
    "GradientReport",
    "LeafComparison",
    "Mismatch",
    "NonManualPrimitive",
    "SweepReport",
    "Tolerance",
    "assert_fully_manual",
    "check_gradients",
    "count_custom_rules",
    "find_non_manual",
    "hvp",
    "numerical_gradient",
    "relative_error",
    "strip_custom_rules",
    "strip_custom_vjps",
    "sweep_op",
]
