"""Edge cases of the sequence, attention, pooling, conv and embedding ops (issue 30): bad
lengths under jit, NaN parity with autodiff of the reference, empty and unreadable inputs.
Each case eager and under jit, forward and gradient; small float32 shapes, one compile per
op where the case's values can be traced."""

import importlib.util
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbp import ops, reference

B, T, F, H = 3, 4, 2, 3


def _normal(seed, *shape):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _recurrent(op):
    """``f(x, lengths) -> (outputs, dx)`` of one recurrent op with fixed small weights."""
    gates = {"rnn": 1, "lstm": 4, "gru": 3}[op]
    biases = ("b_ih", "b_hh") if op == "gru" else ("b",)
    params = {"w_ih": _normal(1, F, gates * H) * 0.5, "w_hh": _normal(2, H, gates * H) * 0.5}
    params |= {name: jnp.zeros(gates * H) for name in biases}
    return lambda x, lengths: getattr(ops, op)(params, x, lengths=lengths)


SEQUENCE_OPS = {
    "rnn": _recurrent("rnn"),
    "lstm": _recurrent("lstm"),
    "gru": _recurrent("gru"),
    "reverse_sequences": lambda x, lengths: ops.reverse_sequences(x, lengths=lengths),
}


def _outputs_and_dx(fn):
    def run(x, lengths):
        y, vjp = jax.vjp(lambda x: fn(x, lengths), x)
        return y, vjp(jax.tree_util.tree_map(jnp.ones_like, y))[0]

    return run


@pytest.mark.parametrize("op", sorted(SEQUENCE_OPS))
def test_lengths_out_of_range_raise_eagerly_and_poison_under_jit(op):
    fn = SEQUENCE_OPS[op]
    x = _normal(0, B, T, F)
    good = np.array([T, 2, 0])
    run = jax.jit(_outputs_and_dx(fn))
    clean_y, clean_dx = run(x, good)
    for bad_row, bad_length in ((1, T + 1), (2, -1)):
        lengths = good.copy()
        lengths[bad_row] = bad_length
        with pytest.raises(ValueError, match=rf"{op}: length {bad_length} is outside \[0, {T}\]"):
            fn(x, lengths)
        y, dx = run(x, lengths)
        rows_with_nan = [bool(np.isnan(np.asarray(leaf)[bad_row]).all()) for leaf in jax.tree_util.tree_leaves(y)]
        assert all(rows_with_nan), f"{op}: the sequence with length {bad_length} is not NaN in every output"
        assert np.isnan(dx[bad_row]).all()
        others = [r for r in range(B) if r != bad_row]
        for leaf, clean in zip(jax.tree_util.tree_leaves(y), jax.tree_util.tree_leaves(clean_y)):
            np.testing.assert_allclose(np.asarray(leaf)[others], np.asarray(clean)[others], rtol=1e-6)
        np.testing.assert_allclose(np.asarray(dx)[others], np.asarray(clean_dx)[others], rtol=1e-5, atol=1e-7)


def test_lengths_out_of_range_poison_the_weight_gradients_under_jit():
    params = {"w_ih": _normal(1, F, H), "w_hh": _normal(2, H, H), "b": jnp.zeros(H)}
    x = _normal(0, B, T, F)

    def loss(params, lengths):
        return jnp.sum(ops.rnn(params, x, lengths=lengths)[0])

    grads = jax.jit(jax.grad(loss))(params, jnp.array([T, T + 3, 1]))
    assert all(bool(jnp.isnan(g).any()) for g in jax.tree_util.tree_leaves(grads))


# --------------------------------------------------------------------- attention NaN parity


def _attention_case(name):
    q, k, v = _normal(1, 2, 5, 2, 3), _normal(2, 2, 5, 1, 3), _normal(3, 2, 5, 1, 2)
    key_mask = jnp.ones((1, 1, 1, 5), bool).at[..., 3].set(False)
    return {
        "NaN in a key": (q, k.at[0, 3, 0, 1].set(jnp.nan), v, None, False),
        "NaN in v at a masked key": (q, k, v.at[1, 3, 0, 0].set(jnp.nan), key_mask, False),
        "NaN in k at a masked key": (q, k.at[1, 3, 0, 2].set(jnp.nan), v, key_mask, False),
        "NaN in q, masked keys": (q.at[0, 2, 1, 0].set(jnp.nan), k, v, key_mask, False),
        "NaN in q, causal": (q.at[0, 2, 1, 0].set(jnp.nan), k, v, None, True),
        "+inf in q": (q.at[1, 0, 0, 0].set(jnp.inf), k, v, key_mask, False),
    }[name]


@pytest.mark.parametrize(
    "name",
    ["NaN in a key", "NaN in v at a masked key", "NaN in k at a masked key", "NaN in q, masked keys", "+inf in q"]
    + ["NaN in q, causal"],
)
def test_attention_gradient_is_nan_exactly_where_autodiff_of_the_reference_is(name):
    """Under jit (the eager runs are in experiments/edge_case_sweep.py: the unrolled scans
    dispatch op by op). The two documented exceptions (ops/attention.py's module docstring):
    with ``causal`` the reference's 0 * NaN in tiles the tiled passes skip; a NaN in ``v`` at a
    masked key makes D = rowsum(dY * Y) NaN in rows whose output is NaN."""
    q, k, v, mask, causal = _attention_case(name)

    def manual(q, k, v):
        return ops.attention(q, k, v, mask=mask, causal=causal, block_size=2)

    def plain(q, k, v):
        return reference.attention(q, k, v, mask, causal=causal)

    def output_and_grads(fn):
        y, vjp = jax.vjp(fn, q, k, v)
        return (y, *vjp(jnp.ones_like(y)))

    run = jax.jit(output_and_grads, static_argnums=0)
    got, expected = run(manual), run(plain)
    for label, a, b in zip(("y", "dq", "dk", "dv"), got, expected):
        a, b = np.asarray(a), np.asarray(b)
        if causal:  # may be finite where autodiff is NaN, never the other way
            assert not (np.isnan(a) & ~np.isnan(b)).any(), f"{name}: {label} NaN where autodiff is not"
            b = np.where(np.isnan(b), a, b)
        if name == "NaN in v at a masked key":  # may be NaN where autodiff is not, in rows with NaN output
            assert not (np.isnan(b) & ~np.isnan(a)).any(), f"{name}: {label} hides a NaN"
            assert np.isnan(got[0][1]).any() and np.isfinite(a[0]).all()  # batch 1 holds the NaN
            b = np.where(np.isnan(a), a, b)
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=f"{name}: NaN positions of {label}")
        finite = np.isfinite(a) & np.isfinite(b)
        np.testing.assert_allclose(a[finite], b[finite], rtol=1e-4, atol=1e-5, err_msg=f"{name}: {label}")
    np.testing.assert_array_equal(manual(q, k, v), plain(q, k, v))  # the primal is the reference itself


# ----------------------------------------------------------------------- max-pool NaN rule


@pytest.mark.parametrize(("window", "stride", "padding"), [(2, 2, "VALID"), (3, 1, "SAME")])
def test_max_pool_routes_the_gradient_of_a_nan_window_where_autodiff_does(window, stride, padding):
    x = jnp.arange(32.0).reshape(1, 4, 4, 2)
    x = x.at[0, 0, 0, 0].set(jnp.nan).at[0, 1, 1, 0].set(jnp.nan).at[0, 3, 2, 1].set(jnp.nan)
    x = x.at[0, 2, :, 1].set(7.0)  # ties next to a NaN

    def grad(pool):
        return jax.jit(jax.grad(lambda x: jnp.nansum(pool(x, window, stride, padding) * 1.5)))(x)

    np.testing.assert_array_equal(grad(ops.max_pool2d), grad(reference.max_pool2d))


# ------------------------------------------------------------------- empty and degenerate


def _values_and_grads(fn, *args, jit):
    def run(*args):
        y, vjp = jax.vjp(fn, *args)
        return y, vjp(jnp.ones_like(y))

    return (jax.jit(run) if jit else run)(*args)


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize(
    "shapes",
    [
        ((0, 3, 2, 4), (0, 5, 1, 4), (0, 5, 1, 2)),  # batch 0
        ((2, 0, 2, 4), (2, 5, 1, 4), (2, 5, 1, 2)),  # q_time 0
        ((2, 3, 0, 4), (2, 5, 1, 4), (2, 5, 1, 2)),  # no query heads
        ((2, 3, 2, 4), (2, 5, 1, 4), (2, 5, 1, 0)),  # v_dim 0
    ],
)
def test_attention_with_an_empty_output_returns_it_like_plain_jnp(shapes, jit):
    q, k, v = (jnp.ones(shape) for shape in shapes)
    y, grads = _values_and_grads(lambda q, k, v: ops.attention(q, k, v, causal=True), q, k, v, jit=jit)
    expected_y, expected_grads = _values_and_grads(lambda q, k, v: reference.attention(q, k, v), q, k, v, jit=False)
    assert y.shape == expected_y.shape == (*shapes[0][:3], shapes[2][-1])
    for got, expected in zip(grads, expected_grads):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(
    ("shapes", "match"),
    [
        (((2, 3, 2, 4), (2, 0, 1, 4), (2, 0, 1, 2)), "attention: k_time must be positive"),
        (((2, 3, 0, 4), (2, 5, 0, 4), (2, 5, 0, 2)), "attention: k and v need at least one key/value head"),
        (((2, 3, 2, 0), (2, 5, 1, 0), (2, 5, 1, 2)), "attention: head_dim must be positive"),
    ],
)
def test_attention_shapes_plain_jnp_cannot_compute_are_refused_by_name(shapes, match):
    q, k, v = (jnp.ones(shape) for shape in shapes)
    for call in (ops.attention, jax.jit(ops.attention), jax.grad(lambda q, k, v: ops.attention(q, k, v).sum())):
        with pytest.raises(ValueError, match=match):
            call(q, k, v)


@pytest.mark.parametrize("op", ["conv1d", "conv2d", "conv_transpose2d"])
def test_zero_size_kernel_is_refused_by_name(op):
    spatial = 1 if op == "conv1d" else 2
    params = {"w": jnp.ones((0,) * spatial + (2, 3)), "b": jnp.zeros(3 if op != "conv_transpose2d" else 2 * 1)}
    x = jnp.ones((1,) + (4,) * spatial + (2 if op != "conv_transpose2d" else 3,))
    for call in (getattr(ops, op), jax.jit(getattr(ops, op))):
        with pytest.raises(ValueError, match=rf'{op}: params\["w"\] has a zero-size kernel'):
            call(params, x)


def test_embedding_with_an_empty_vocabulary():
    w = jnp.ones((0, 3))
    for call in (ops.embedding, jax.jit(ops.embedding)):
        with pytest.raises(ValueError, match="embedding: .* has an empty vocabulary"):
            call({"w": w}, jnp.array([0, 1]))
        with pytest.raises(ValueError, match="embedding: .* has an empty vocabulary"):
            call({"w": w}, jnp.zeros((0, 2), jnp.int32))


UNREADABLE = {"None": None, "string": "abc", "ragged list": [[1.0, 2.0], [3.0]]}


@pytest.mark.parametrize("value", sorted(UNREADABLE))
def test_unreadable_inputs_are_refused_by_name(value):
    bad = UNREADABLE[value]
    x, q = jnp.ones((2, 4, 4, 2)), jnp.ones((1, 3, 2, 4))
    calls = {
        "attention": lambda: ops.attention(q, bad, q),
        "max_pool2d": lambda: ops.max_pool2d(bad, 2),
        "conv2d": lambda: ops.conv2d({"w": bad, "b": jnp.zeros(2)}, x),
        "layer_norm": lambda: ops.layer_norm({"gamma": bad, "beta": jnp.zeros(2)}, x),
        "reverse_sequences": lambda: ops.reverse_sequences(jnp.ones((2, 3, 1)), lengths=bad if value else [1]),
        "embedding": lambda: ops.embedding({"w": jnp.ones((3, 2))}, "0" if value == "string" else bad),
    }
    for op, call in calls.items():
        if op == "reverse_sequences" and value == "None":
            continue  # lengths=None is the documented "whole sequence"
        with pytest.raises(TypeError, match=f"^{op}: "):
            call()


# ------------------------------------------------------------------------------- the sweep


def _sweep_module():
    path = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "edge_case_sweep.py"
    spec = importlib.util.spec_from_file_location("edge_case_sweep", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_edge_case_sweep_counts_each_outcome(monkeypatch, capsys):
    sweep = _sweep_module()
    real_case = sweep.all_cases()[0]  # rnn with params["w_ih"] None
    assert len(sweep.all_cases()) >= 350
    x = np.ones(3)
    monkeypatch.setitem(sweep.SPECS, "fake", sweep.OpSpec(lambda x: x, lambda x: x, ("x",), (), lambda: {}))
    monkeypatch.setitem(sweep.SPECS, "doubled", sweep.OpSpec(lambda x: 2 * x, lambda x: x, ("x",), (), lambda: {}))
    monkeypatch.setitem(sweep.SPECS, "broken", sweep.OpSpec(lambda x: 1 // 0, lambda x: x, ("x",), (), lambda: {}))
    cases = [
        sweep.Case("fake", "same", {"x": x}),
        sweep.Case("doubled", "differs", {"x": x}),
        sweep.Case("broken", "raises", {"x": x}),
        real_case,
    ]
    result = sweep.sweep(cases)
    assert result["counts"]["fake"]["match"] == 4
    assert result["counts"]["doubled"]["silent"] == 4
    assert result["counts"]["broken"]["raw error"] == 4
    assert result["counts"]["rnn"]["refused"] == 4
    sweep.print_table(result)
    assert "refused, jnp empty" in capsys.readouterr().out


# ------------------------------------------------------------------- NumPy integer hyper-parameters

_NUMPY_INT_CALLS = {
    "conv2d": lambda i: (
        ops.conv2d,
        ({"w": _normal(0, 3, 3, 2, 4), "b": _normal(1, 4)}, _normal(2, 2, 7, 7, 2)),
        {"stride": i(2), "padding": ((i(1), i(0)), (i(0), i(1))), "dilation": (i(1), i(2))},
    ),
    "conv1d": lambda i: (
        ops.conv1d,
        ({"w": _normal(0, 3, 2, 4), "b": _normal(1, 4)}, _normal(2, 2, 9, 2)),
        {"stride": i(2), "padding": i(1)},
    ),
    "max_pool2d": lambda i: (ops.max_pool2d, (_normal(3, 2, 6, 6, 3),), {"window": i(2), "stride": (i(2), i(1))}),
    "avg_pool2d": lambda i: (ops.avg_pool2d, (_normal(3, 2, 6, 6, 3),), {"window": (i(3), i(2)), "stride": i(2)}),
    "attention": lambda i: (
        ops.attention,
        (_normal(4, 2, 5, 2, 3), _normal(5, 2, 5, 2, 3), _normal(6, 2, 5, 2, 3)),
        {"causal": True, "block_size": i(2)},
    ),
}


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("name", sorted(_NUMPY_INT_CALLS))
def test_integral_numpy_scalars_are_accepted_as_static_ints(name, jit):
    """``stride=np.int64(2)`` (and NumPy ints in windows, paddings, dilations, block sizes) give the
    same output and gradient as Python ints, as plain JAX accepts them."""
    op, args, numpy_kwargs = _NUMPY_INT_CALLS[name](np.int64)
    _, _, python_kwargs = _NUMPY_INT_CALLS[name](int)
    got = _values_and_grads(lambda *a: op(*a, **numpy_kwargs), *args, jit=jit)
    want = _values_and_grads(lambda *a: op(*a, **python_kwargs), *args, jit=jit)
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("value", [np.float64(2.0), True, np.bool_(True), 2.5])
def test_non_integral_hyper_parameters_are_still_refused_by_name(value):
    with pytest.raises(TypeError, match="conv2d: stride"):
        ops.conv2d({"w": _normal(0, 3, 3, 2, 4), "b": _normal(1, 4)}, _normal(2, 2, 7, 7, 2), stride=value)
