"""Second order through the hand-written rules (a gradgradcheck over the op catalog).

For every op, ``g(args) = grad <c, op(args)>`` is itself differentiated in reverse
mode: its VJP runs autodiff *through the backward rules*. That must equal the
second derivative of the reference math (``jax.grad`` of ``jax.grad`` with custom
rules stripped) and central finite differences of ``g``, in float64.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbp import ops
from jaxbp.gradcheck import check_gradients, hvp, strip_custom_vjps
from jaxbp.op_cases import CASES

REFERENCE_TOL, NUMERICAL_TOL = 1e-9, 1e-5
# Finite differences of the gradient cost one more compilation per op: a representative set
# (smooth, saturating, normalizing, fused-loss and linear ops) keeps the file inside the CI budget.
WITH_FINITE_DIFFERENCES = {
    "tanh",
    "gelu_tanh",
    "softmax",
    "softmax_cross_entropy_int",
    "layer_norm",
    "dense",
    "batch_norm",
}


def _is_float(tree) -> bool:
    leaves = jax.tree_util.tree_leaves(tree)
    return bool(leaves) and all(jnp.issubdtype(jnp.result_type(leaf), jnp.floating) for leaf in leaves)


def _gradient_function(op, args: tuple, positions: tuple[int, ...]):
    """``args -> grad_{args[positions]} <c, op(args)>`` with a fixed random cotangent ``c``."""
    out_leaves, out_tree = jax.tree_util.tree_flatten(jax.eval_shape(op, *args))
    rng = np.random.default_rng(1)
    cotangent = [jnp.asarray(rng.standard_normal(leaf.shape), leaf.dtype) for leaf in out_leaves]

    def projected(*args):
        return sum(jnp.vdot(c, y) for c, y in zip(cotangent, jax.tree_util.tree_leaves(op(*args))))

    def gradient(*args):
        return jax.grad(projected, argnums=positions)(*args)

    return gradient


@pytest.mark.parametrize("name", sorted(CASES))
def test_second_derivatives_match_reference_and_finite_differences(x64, name):
    case = CASES[name]
    args = case.draw(11)
    positions = tuple(i for i, a in enumerate(args) if _is_float(a))
    manual = _gradient_function(case.op, args, positions)
    reference = _gradient_function(strip_custom_vjps(case.op), args, positions)
    report = check_gradients(
        manual, *args, argnums=positions, reference=reference, numerical=name in WITH_FINITE_DIFFERENCES, eps=1e-5
    )
    assert report.forward_error <= REFERENCE_TOL, report
    for row in report.rows:
        # The relative error of two zeros is ill-posed: softmax over one class has a second derivative
        # of exactly 0 by hand and ~1e-17 of rounding by autodiff.
        both_zero = row.manual_norm < 1e-12 and row.vs_numerical in (None, 0.0)
        assert row.vs_reference <= REFERENCE_TOL or both_zero, report
        assert row.vs_numerical is None or row.vs_numerical <= NUMERICAL_TOL, report


def test_hessian_forms_agree_through_manual_rules(x64):
    """grad-of-grad, jax.hessian, jacrev-of-jacrev and hvp give one Hessian (the reference's)."""

    def loss(x):
        return ops.mse(ops.gelu(ops.tanh(x), approximate=True), jnp.linspace(-1, 1, 4))

    x, v = jnp.array([0.3, -1.2, 2.0, 0.1]), jnp.array([1.0, -0.5, 0.25, 2.0])
    expected = jax.jit(jax.hessian(strip_custom_vjps(loss)))(x)
    np.testing.assert_allclose(jax.jit(jax.hessian(loss))(x), expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(jax.jit(jax.jacrev(jax.jacrev(loss)))(x), expected, rtol=1e-12, atol=1e-15)
    grad_of_grad = jax.jit(jax.grad(lambda x: jnp.vdot(jax.grad(loss)(x), v)))
    np.testing.assert_allclose(grad_of_grad(x), expected @ v, rtol=1e-12)
    np.testing.assert_allclose(jax.jit(hvp, static_argnums=0)(loss, x, v), expected @ v, rtol=1e-12)
