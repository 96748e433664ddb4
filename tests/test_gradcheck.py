"""gradcheck and the jaxpr tools: they must catch wrong backward rules and non-manual math."""

from __future__ import annotations

import pathlib

import chex
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbp import models, nn, ops
from jaxbp.core import define_op
from jaxbp.gradcheck import (
    assert_fully_manual,
    check_gradients,
    count_custom_rules,
    find_non_manual,
    numerical_gradient,
    relative_error,
    strip_custom_rules,
    strip_custom_vjps,
)


def _cube(x):
    return x**3


def _cube_fwd(x):
    return x**3, x


def _cube_wrong_bwd(x, dy):
    return (dy * 2 * x**2,)  # the bug: should be 3 x^2


wrong_cube = define_op(_cube, _cube_fwd, _cube_wrong_bwd)


def test_numerical_gradient_of_known_functions(x64):
    x = jnp.array([0.3, -1.2, 2.0])
    np.testing.assert_allclose(
        numerical_gradient(lambda x: jnp.sum(jnp.sin(x)), x), np.cos([0.3, -1.2, 2.0]), rtol=1e-9
    )
    tree = {"a": jnp.array([1.0, 2.0]), "b": jnp.array(3.0)}
    grad = numerical_gradient(lambda t: t["a"][0] * t["a"][1] * t["b"], tree)
    np.testing.assert_allclose(grad["a"], [6.0, 3.0], rtol=1e-9)
    np.testing.assert_allclose(grad["b"], 2.0, rtol=1e-9)


def test_numerical_gradient_multiple_argnums_and_chunking(x64):
    f = lambda x, y: jnp.sum(x * y**2)
    x, y = jnp.arange(1.0, 6.0), jnp.arange(2.0, 7.0)
    gx, gy = numerical_gradient(f, x, y, argnums=(0, 1), chunk_size=2)
    np.testing.assert_allclose(gx, y**2, rtol=1e-7)  # central differences: O(eps^2) + rounding/eps
    np.testing.assert_allclose(gy, 2 * x * y, rtol=1e-7)


def test_numerical_gradient_requires_float64_and_scalar_output():
    with jax.enable_x64(False), pytest.raises(RuntimeError, match="numerical_gradient needs float64"):
        numerical_gradient(jnp.sum, jnp.ones(2))
    with jax.enable_x64(True), pytest.raises(ValueError, match="f must return a scalar"):
        numerical_gradient(lambda x: x, jnp.ones(2))


def test_relative_error_definition():
    assert relative_error(jnp.zeros(3), jnp.zeros(3)) == 0.0
    assert relative_error(jnp.array([1.0, 0.0]), jnp.array([-1.0, 0.0])) == pytest.approx(1.0)
    assert relative_error(jnp.array([3.0, 4.0]), jnp.array([3.0, 4.0 + 1e-3])) == pytest.approx(1e-3 / 10.0, rel=1e-3)
    with pytest.raises(ValueError, match="sizes differ"):
        relative_error(jnp.ones(2), jnp.ones(3))


def test_check_gradients_catches_a_wrong_backward_rule_and_names_the_element(x64):
    report = check_gradients(wrong_cube, jnp.array([0.5, -1.0, 2.0]), seed=3)
    assert report.worst_vs_reference > 1 and report.worst_vs_numerical > 1  # 2x^2 vs 3x^2
    # the worst element is x = 2 (|error| = x^2 |v|, v the seeded cotangent); both values named
    worst = report.rows[0].vs_reference()
    v = np.random.default_rng(3).standard_normal(3)
    assert worst.index == (int(np.argmax(np.abs(v) * np.array([0.25, 1.0, 4.0]))),)
    assert worst.got == pytest.approx(2 * [0.25, 1.0, 4.0][worst.index[0]] * v[worst.index[0]])
    assert worst.want == pytest.approx(3 * [0.25, 1.0, 4.0][worst.index[0]] * v[worst.index[0]])
    with pytest.raises(
        AssertionError, match=r"argument 0 \(3,\): vs reference at \[\d\]: manual .*, reference .*allowed"
    ):
        report.assert_ok()
    with pytest.raises(AssertionError, match=r"vs finite differences at \[\d\]: manual .*, finite differences "):
        report.assert_ok()


def test_exact_zero_gradients_pass(x64):
    """A zero-initialised output layer: d/db of the loss is exactly 0 by hand and ~1e-11 by finite differences."""
    f = lambda p, x: ops.softmax_cross_entropy(ops.dense(p, x), jnp.array([0, 1]))
    check_gradients(f, {"w": jnp.zeros((3, 2)), "b": jnp.zeros(2)}, jnp.ones((2, 3))).assert_ok()


def test_one_wrong_element_among_many_is_caught(x64):
    """Per element, not per norm: one sign flipped in 400 elements moves the norm error by ~1e-2 / 20."""

    def flip_one_bwd(_, dy):
        return (dy.at[7].multiply(-1),)

    almost = define_op(lambda x: 2 * x, lambda x: (2 * x, None), lambda r, dy: flip_one_bwd(r, 2 * dy))
    report = check_gradients(almost, jnp.linspace(-1, 1, 400), numerical=False)
    assert [m.index for m in (row.vs_reference() for row in report.rows)] == [(7,)]
    with pytest.raises(AssertionError, match=r"vs reference at \[7\]"):
        report.assert_ok()


def test_tolerances_are_per_element_absolute_plus_relative():
    from jaxbp.gradcheck import Tolerance
    from jaxbp.gradcheck._compare import worst_element

    tol = Tolerance(atol=1e-3, rtol=1e-2)
    # 0.5 + 0.0105 vs 0.5: allowed 1e-3 + 5e-3 = 6e-3 -> score 0.0105 / 0.006 = 1.75
    m = worst_element(np.array([0.0, 0.5105]), np.array([0.0, 0.5]), tol, 0.0, "reference")
    assert m.index == (1,) and m.score == pytest.approx(1.75)
    nan, inf = float("nan"), float("inf")
    assert worst_element(np.array([nan, inf]), np.array([nan, inf]), tol, 0.0, "r").score == 0.0
    assert worst_element(np.array([nan, 1.0]), np.array([0.0, 1.0]), tol, 0.0, "r").score == inf


def test_check_gradients_passes_a_correct_network_and_prints_a_table(x64):
    network = models.mlp([5, 3], "tanh")
    params, _ = network.init(jax.random.key(0), (4, 2))
    x = jax.random.normal(jax.random.key(1), (4, 2))
    labels = jnp.array([0, 1, 2, 1])
    report = check_gradients(lambda p, x: ops.softmax_cross_entropy(network.apply(p, x), labels), params, x)
    report.assert_ok()
    assert len(report.rows) == 5  # w, b of two layers + x
    text = str(report)
    assert "vs reference (score at)" in text and "[0][0]['w']" in text and "(2, 5)" in text


def test_check_gradients_skips_integer_arguments_and_honours_argnums(x64):
    logits = jax.random.normal(jax.random.key(0), (3, 4))
    labels = jnp.array([0, 3, 1])
    report = check_gradients(ops.softmax_cross_entropy, logits, labels)
    assert [r.argument for r in report.rows] == [0]
    report = check_gradients(ops.mse, logits, logits * 2, argnums=1, numerical=False)
    assert [r.argument for r in report.rows] == [1] and report.rows[0].numerical is None


def test_check_gradients_requires_float64():
    with jax.enable_x64(False), pytest.raises(RuntimeError, match="jax.enable_x64"):
        check_gradients(ops.tanh, jnp.ones(2))


def test_strip_custom_vjps_recovers_the_reference_gradient(x64):
    x = jnp.array([0.5, -1.0, 2.0])
    f = lambda x: jnp.sum(wrong_cube(x))
    np.testing.assert_allclose(jax.grad(f)(x), 2 * x**2)  # the wrong manual rule
    np.testing.assert_allclose(jax.grad(strip_custom_vjps(f))(x), 3 * x**2)  # autodiff through x**3


def test_strip_custom_vjps_inside_jit_scan_and_cond(x64):
    def f(x):
        def body(carry, _):
            return wrong_cube(carry) * 0.5, None

        y = jax.jit(lambda x: jax.lax.scan(body, x, None, length=2)[0])(x)
        return jnp.sum(jax.lax.cond(jnp.sum(x) > 0, wrong_cube, jnp.sin, y))

    x = jnp.array([0.7, 0.4])
    expected = jax.grad(lambda x: jnp.sum(((((x**3) * 0.5) ** 3) * 0.5) ** 3))(x)
    np.testing.assert_allclose(jax.grad(strip_custom_vjps(f))(x), expected, rtol=1e-12)
    assert relative_error(jax.grad(f)(x), expected) > 0.1


def test_assert_fully_manual_passes_on_an_nn_network_and_loss():
    network = models.mlp([8, 8, 3], "gelu", residual_blocks=True)
    params, _ = network.init(jax.random.key(0), (2, 4))
    loss = lambda p, x: ops.softmax_cross_entropy(network.apply(p, x), jnp.array([0, 2]))
    assert_fully_manual(loss, params, jnp.ones((2, 4)))
    assert_fully_manual(jax.jit(loss), params, jnp.ones((2, 4)))
    assert_fully_manual(
        lambda p, x: ops.softmax_cross_entropy(nn.checkpoint(network).apply(p, x), jnp.array([0, 2])),
        params,
        jnp.ones((2, 4)),
    )


def test_assert_fully_manual_names_a_raw_primitive_and_where_it_came_from():
    params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}

    def raw_tanh_network(params, x):
        return ops.mse(jnp.tanh(ops.dense(params, x)), jnp.zeros((4, 2)))

    with pytest.raises(AssertionError, match=r"tanh at .*test_gradcheck.py:\d+"):
        assert_fully_manual(raw_tanh_network, params, jnp.ones((4, 3)))
    found = find_non_manual(jax.jit(raw_tanh_network), params, jnp.ones((4, 3)))
    assert [(f.primitive, f.context) for f in found] == [("tanh", "jit")]


def test_find_non_manual_reports_every_raw_primitive_along_the_path():
    found = find_non_manual(lambda x: ops.tanh(jnp.sin(jnp.exp(x))), jnp.ones(3))
    assert [f.primitive for f in found] == ["exp", "sin"]
    # stop_gradient cuts the path: nothing after it is differentiated
    assert find_non_manual(lambda x: jnp.sin(jax.lax.stop_gradient(x)), jnp.ones(3)) == []


def test_find_non_manual_ignores_non_differentiable_paths():
    params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}

    def branchy(params, x):
        y = ops.dense(params, x)
        # the predicate is a comparison: derivatives do not flow through it
        return jax.lax.cond(jnp.sum(x) > 0, ops.sigmoid, ops.tanh, y)

    assert find_non_manual(branchy, params, jnp.ones((4, 3))) == []
    # only arguments in argnums count as differentiated
    assert find_non_manual(lambda p, x: ops.dense(p, jnp.exp(x)), params, jnp.ones((4, 3)), argnums=0) == []
    assert [f.primitive for f in find_non_manual(lambda p, x: ops.dense(p, jnp.exp(x)), params, jnp.ones((4, 3)))] == [
        "exp"
    ]


def test_find_non_manual_recurses_into_scan_bodies():
    w = {"w": jnp.eye(2), "b": jnp.zeros(2)}

    def rnn(params, x):
        def step(h, x_t):
            h = jnp.tanh(ops.add(ops.dense(params, h), x_t))
            return h, h

        return jax.lax.scan(step, jnp.zeros((1, 2)), x)[0]

    found = find_non_manual(rnn, w, jnp.ones((3, 1, 2)))
    assert [(f.primitive, f.context) for f in found] == [("tanh", "scan")]


# ------------------------------------------------------------- forward mode, hvp


def test_check_gradients_asked_for_forward_mode_says_reverse_only_and_what_to_use(x64):
    with pytest.raises(
        ValueError, match=r"check_gradients: reverse mode only \(modes \('fwd',\)\).*jaxbp.gradcheck.hvp"
    ):
        check_gradients(ops.tanh, jnp.ones(3), modes=("fwd",))
    with pytest.raises(ValueError, match="reverse mode only"):
        check_gradients(ops.tanh, jnp.ones(3), modes=("fwd", "rev"))
    check_gradients(ops.tanh, jnp.ones(3), modes=("rev",)).assert_ok()


def test_hvp_through_hand_written_rules_equals_the_reference_hessian(x64):
    """Forward-over-reverse through custom VJPs, where jax.jvp of the op itself raises."""
    from jaxbp.gradcheck import hvp

    def loss(params, x, labels):
        return ops.softmax_cross_entropy(ops.dense(params, ops.tanh(ops.dense(params, x))), labels)

    key_w, key_b, key_x, key_v = jax.random.split(jax.random.key(0), 4)
    params = {"w": jax.random.normal(key_w, (3, 3)), "b": jax.random.normal(key_b, (3,))}
    x, labels = jax.random.normal(key_x, (4, 3)), jnp.array([0, 2, 1, 0])
    v = jax.tree_util.tree_map(lambda p: jax.random.normal(key_v, p.shape), params)
    got = jax.jit(lambda params, v: hvp(loss, params, v, x, labels))(params, v)  # one compile, not op by op
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    hessian = jax.jit(jax.hessian(lambda f: strip_custom_vjps(loss)(unravel(f), x, labels)))(flat)
    expected = unravel(hessian @ jax.flatten_util.ravel_pytree(v)[0])
    chex.assert_trees_all_close(got, expected, rtol=1e-10, atol=1e-12)
    with pytest.raises(TypeError, match="forward-mode"):
        jax.jvp(lambda p: loss(p, x, labels), (params,), (v,))


def test_gradcheck_uses_no_private_jax_module():
    import jaxbp.gradcheck

    for path in pathlib.Path(jaxbp.gradcheck.__file__).parent.glob("*.py"):
        assert "jax._src" not in path.read_text(), path


# ------------------------------------------------ custom_jvp, references, second order


@jax.custom_jvp
def _wrong_jvp_sin(x):
    return jnp.sin(x)


@_wrong_jvp_sin.defjvp
def _wrong_jvp_sin_rule(primals, tangents):
    (x,), (dx,) = primals, tangents
    return jnp.sin(x), jnp.cos(x) * dx * 1.001  # the bug: 0.1% too large


def test_a_wrong_custom_jvp_fails_against_its_stripped_reference(x64):
    report = check_gradients(lambda x: _wrong_jvp_sin(x) * 2, jnp.array([0.3, -1.0]), numerical=False)
    assert report.no_reference is None
    with pytest.raises(AssertionError, match="vs reference at"):
        report.assert_ok()


def test_without_anything_to_strip_the_report_says_so_instead_of_comparing_f_with_itself(x64):
    report = check_gradients(jnp.sin, jnp.array([0.3, -1.0]), numerical=False)
    assert "no custom_vjp or custom_jvp rule to strip" in str(report)
    assert all(row.reference is None for row in report.rows)
    with pytest.raises(AssertionError, match="nothing was compared"):
        report.assert_ok()
    check_gradients(jnp.sin, jnp.array([0.3, -1.0])).assert_ok()  # finite differences still check autodiff


def test_a_reference_autodiff_cannot_differentiate_is_reported(x64):
    def opaque(x):
        return jax.pure_callback(np.sin, jax.ShapeDtypeStruct(x.shape, x.dtype), x, vmap_method="sequential")

    op = define_op(opaque, lambda x: (opaque(x), x), lambda x, dy: (dy * jnp.cos(x),))
    report = check_gradients(op, jnp.array([0.3, -1.0]))
    assert report.no_reference.startswith("autodiff of the reference failed")
    report.assert_ok()  # finite differences agree with the rule


def test_keyword_integer_and_boolean_arguments(x64):
    def masked_mean(x, labels, mask, *, scale):
        return scale * ops.softmax_cross_entropy(ops.tanh(x), labels) + jnp.sum(jnp.where(mask, 0.0, 1.0))

    x = jnp.array([[0.3, -1.0, 2.0], [1.0, 0.5, -0.2]])
    report = check_gradients(masked_mean, x, jnp.array([0, 2]), jnp.array([True, False]), kwargs={"scale": 3.0})
    assert [r.argument for r in report.rows] == [0]
    report.assert_ok()


def _cube_stopped_bwd(x, dy):
    return (dy * 3 * jax.lax.stop_gradient(x) ** 2,)  # first order right; its derivative is lost


def test_order_2_catches_a_backward_that_is_not_differentiable_correctly(x64):
    stopped_cube = define_op(_cube, _cube_fwd, _cube_stopped_bwd)
    x = jnp.array([0.5, -1.0, 2.0])
    check_gradients(stopped_cube, x).assert_ok()
    report = check_gradients(stopped_cube, x, order=2)
    assert "second derivative" in str(report)
    with pytest.raises(AssertionError, match="(?s)vs reference at .*vs finite differences at"):
        report.assert_ok()
    right_cube = define_op(_cube, _cube_fwd, lambda x, dy: (dy * 3 * x**2,))
    check_gradients(right_cube, x, order=2).assert_ok()


def test_check_gradients_refuses_other_orders(x64):
    with pytest.raises(ValueError, match="order must be 1 or 2, got 3"):
        check_gradients(ops.tanh, jnp.ones(2), order=3)


# ------------------------------------------------------------------ fully manual


def test_float_math_downstream_of_an_integer_result_is_not_a_derivative():
    x = jnp.arange(6.0).reshape(2, 3)
    assert find_non_manual(lambda x: ops.mse(x, jnp.argmax(x, 1, keepdims=True) * jnp.ones((1, 3))), x) == []
    assert find_non_manual(lambda x, n: ops.mse(ops.tanh(x), n * jnp.ones((2, 3))), x, jnp.array(2)) == []


def test_custom_jvp_rules_count_as_hand_written():
    assert find_non_manual(lambda x: _wrong_jvp_sin(ops.tanh(x)), jnp.ones(3)) == []
    assert [f.primitive for f in find_non_manual(lambda x: _wrong_jvp_sin(jnp.exp(x)), jnp.ones(3))] == ["exp"]


# ------------------------------------------------------------------------ the CLI


@pytest.mark.parametrize("shapes", ["0", "-3"])
def test_gradcheck_ops_refuses_no_shapes_in_one_line(shapes, capsys):
    from jaxbp import cli

    assert cli.main(["gradcheck-ops", "--shapes", shapes]) != 0
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert captured.out == "" and len(lines) == 1, captured
    assert f"--shapes must be at least 1, got {shapes}" in lines[0]


@pytest.mark.parametrize(
    "library_function",
    [lambda x: jnp.logaddexp(x, 0.0), jax.nn.relu, jax.nn.softplus],
    ids=["logaddexp", "relu", "softplus"],
)
def test_jax_s_own_custom_jvp_rules_stay_in_the_reference(library_function):
    """JAX's own rules fix the reference's derivative at ties (logaddexp'(0) = 1/2, relu'(0) = 0):
    stripping them would differentiate max/abs at the tie instead, so a correct hand-written
    rule built on them would fail and a wrong one could pass."""
    with jax.enable_x64(True):
        x = jnp.array([0.0, 1.5, -2.0])
        f = lambda x: jnp.sum(library_function(x))
        np.testing.assert_array_equal(jax.grad(strip_custom_rules(f))(x), jax.grad(f)(x))
        assert count_custom_rules(f, x) == 0  # nothing of the user's to strip
