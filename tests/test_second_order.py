"""Second order through the hand-written rules: the Hessian forms agree.

(Every op's second derivative -- ``check_gradients(..., order=2)``, a gradgradcheck against
the reference and finite differences -- is part of the sweep in tests/test_catalog.py.)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp import ops
from jaxbp.gradcheck import hvp, strip_custom_rules


def test_hessian_forms_agree_through_manual_rules(x64):
    """grad-of-grad, jax.hessian, jacrev-of-jacrev and hvp give one Hessian (the reference's)."""

    def loss(x):
        return ops.mse(ops.gelu(ops.tanh(x), approximate=True), jnp.linspace(-1, 1, 4))

    x, v = jnp.array([0.3, -1.2, 2.0, 0.1]), jnp.array([1.0, -0.5, 0.25, 2.0])
    expected = jax.jit(jax.hessian(strip_custom_rules(loss)))(x)
    np.testing.assert_allclose(jax.jit(jax.hessian(loss))(x), expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(jax.jit(jax.jacrev(jax.jacrev(loss)))(x), expected, rtol=1e-12, atol=1e-15)
    grad_of_grad = jax.jit(jax.grad(lambda x: jnp.vdot(jax.grad(loss)(x), v)))
    np.testing.assert_allclose(grad_of_grad(x), expected @ v, rtol=1e-12)
    np.testing.assert_allclose(jax.jit(hvp, static_argnums=0)(loss, x, v), expected @ v, rtol=1e-12)
