"""conv2d, conv1d, conv_transpose2d: forward vs independent NumPy loops, hand-written VJPs vs
jax.grad(reference) and finite differences (float64, hypothesis geometries), the adjoint
relation between conv2d and conv_transpose2d in both directions, dtype, residuals, bad input."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxbp import ops, reference
from jaxbp.diagnostics import residual_bytes
from jaxbp.gradcheck import check_gradients

REFERENCE_TOL = 1e-9
NUMERICAL_TOL = 1e-6


def _normal(key, shape, dtype=jnp.float64):
    return jax.random.normal(key, shape, dtype)


def _params(seed, kernel, cin_per_group, cout, dtype=jnp.float64):
    k_w, k_b = jax.random.split(jax.random.key(seed))
    return {"w": _normal(k_w, (*kernel, cin_per_group, cout), dtype), "b": _normal(k_b, (cout,), dtype)}


@st.composite
def geometries(draw, num_spatial=2):
    """Kernel 1-5, stride 1-3, dilation 1-2, every padding form, groups 1-3 and input sizes
    from 'just fits' to a few rows more (so non-divisible sizes and unused rows occur)."""
    kernel = tuple(draw(st.integers(1, 5)) for _ in range(num_spatial))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(num_spatial))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(num_spatial))
    form = draw(st.sampled_from(["SAME", "VALID", "int", "pairs"]))
    if form == "int":
        padding = draw(st.integers(0, 2))
        pads = [(padding, padding)] * num_spatial
    elif form == "pairs":
        pads = [(draw(st.integers(0, 3)), draw(st.integers(0, 3))) for _ in range(num_spatial)]
        padding = tuple(pads)
    else:
        padding = form
        pads = [(0, 0)] * num_spatial
    spans = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
    spatial = tuple(
        max(1, span - lo - hi) + draw(st.integers(0, 4)) if form != "SAME" else draw(st.integers(1, 7))
        for span, (lo, hi) in zip(spans, pads)
    )
    groups = draw(st.integers(1, 3))
    cin = groups * draw(st.integers(1, 2))
    cout = groups * draw(st.integers(1, 2))
    batch = draw(st.integers(1, 2))
    geometry = {"kernel": kernel, "stride": stride, "dilation": dilation, "padding": padding, "groups": groups}
    return geometry, (
        batch,
        spatial,
        cin,
        cout,
    )


def _conv_args(geometry, sizes, seed):
    batch, spatial, cin, cout = sizes
    params = _params(seed, geometry["kernel"], cin // geometry["groups"], cout)
    x = _normal(jax.random.key(seed + 1), (batch, *spatial, cin))
    return params, x


def _options(geometry):
    return {k: v for k, v in geometry.items() if k != "kernel"}


@settings(max_examples=5)
@given(case=geometries(), seed=st.integers(0, 2**16))
def test_conv2d_vjp_matches_reference_and_finite_differences(x64, case, seed):
    geometry, sizes = case
    params, x = _conv_args(geometry, sizes, seed)
    options = _options(geometry)
    report = check_gradients(lambda p, x: ops.conv2d(p, x, **options), params, x)
    report.assert_ok(reference_tol=REFERENCE_TOL, numerical_tol=NUMERICAL_TOL)


@settings(max_examples=2)
@given(case=geometries(num_spatial=1), seed=st.integers(0, 2**16))
def test_conv1d_vjp_matches_reference_and_finite_differences(x64, case, seed):
    geometry, sizes = case
    params, x = _conv_args(geometry, sizes, seed)
    options = _options(geometry)
    report = check_gradients(lambda p, x: ops.conv1d(p, x, **options), params, x)
    report.assert_ok(reference_tol=REFERENCE_TOL, numerical_tol=NUMERICAL_TOL)


@st.composite
def transpose_geometries(draw):
    geometry, (batch, spatial, cin, cout) = draw(geometries())
    padding = geometry["padding"]
    if padding != "SAME":
        stride = geometry["stride"]
        geometry["output_padding"] = tuple(draw(st.integers(0, s - 1)) for s in stride)
    spatial = tuple(draw(st.integers(1, 4)) for _ in spatial)
    return geometry, (batch, spatial, cin, cout)


def _transpose_args(geometry, sizes, seed):
    batch, spatial, cin, cout = sizes  # the transposed conv maps cin -> cout
    params = _params(seed, geometry["kernel"], cout // geometry["groups"], cin)
    params["b"] = _normal(jax.random.key(seed + 2), (cout,))
    return params, _normal(jax.random.key(seed + 1), (batch, *spatial, cin))


def _transpose_fits(geometry, spatial):
    pads = reference.conv.transpose_geometry(
        geometry["padding"],
        spatial,
        geometry["kernel"],
        geometry["stride"],
        geometry["dilation"],
        geometry.get("output_padding", 0),
    )
    pairs, extra = pads
    spans = [d * (k - 1) + 1 for k, d in zip(geometry["kernel"], geometry["dilation"])]
    return all(
        (m - 1) * s + span + e - lo - hi >= 1
        for m, s, span, e, (lo, hi) in zip(spatial, geometry["stride"], spans, extra, pairs)
    )


@settings(max_examples=3)
@given(case=transpose_geometries(), seed=st.integers(0, 2**16))
def test_conv_transpose2d_vjp_matches_reference_and_finite_differences(x64, case, seed):
    geometry, sizes = case
    if not _transpose_fits(geometry, sizes[1]):
        with pytest.raises(ValueError, match="conv_transpose2d: padding"):
            ops.conv_transpose2d(*_transpose_args(geometry, sizes, seed), **_options(geometry))
        return
    params, x = _transpose_args(geometry, sizes, seed)
    options = _options(geometry)
    report = check_gradients(lambda p, x: ops.conv_transpose2d(p, x, **options), params, x)
    report.assert_ok(reference_tol=REFERENCE_TOL, numerical_tol=NUMERICAL_TOL)


# ------------------------------------------------------- forward, independently (NumPy)


def _numpy_conv2d(w, b, x, stride, pads, dilation, groups):
    """y[n,i,j,o] = b[o] + sum_{p,q,c in group(o)} w[p,q,c,o] x_pad[n, i s + p d, j s + q d, c]."""
    (sh, sw), (dh, dw) = stride, dilation
    x_pad = np.pad(x, [(0, 0), *pads, (0, 0)])
    kh, kw, cin_g, cout = w.shape
    out_h = (x_pad.shape[1] - dh * (kh - 1) - 1) // sh + 1
    out_w = (x_pad.shape[2] - dw * (kw - 1) - 1) // sw + 1
    y = np.zeros((x.shape[0], out_h, out_w, cout)) + b
    cout_g = cout // groups
    for i, j, p, q, o in itertools.product(range(out_h), range(out_w), range(kh), range(kw), range(cout)):
        g = o // cout_g
        patch = x_pad[:, i * sh + p * dh, j * sw + q * dw, g * cin_g : (g + 1) * cin_g]
        y[:, i, j, o] += patch @ w[p, q, :, o]
    return y


def _numpy_conv_transpose2d(w, b, x, stride, pads, dilation, output_padding):
    """PyTorch's definition (groups=1): out[n, i s + p d - lo, ...] += x[n, i, c] w_torch[c, o, p, q],
    with w_torch = w.transpose(3, 2, 0, 1); output size (H - 1) s - lo - hi + d (k - 1) + 1 + output_padding."""
    w_torch = np.transpose(w, (3, 2, 0, 1))
    _, cout, kh, kw = w_torch.shape
    n, h, wd, _ = x.shape
    (sh, sw), (dh, dw) = stride, dilation
    out_h = (h - 1) * sh + dh * (kh - 1) + 1 + output_padding[0]
    out_w = (wd - 1) * sw + dw * (kw - 1) + 1 + output_padding[1]
    full = np.zeros((n, out_h, out_w, cout))
    for i, j, p, q in itertools.product(range(h), range(wd), range(kh), range(kw)):
        full[:, i * sh + p * dh, j * sw + q * dw, :] += x[:, i, j, :] @ w_torch[:, :, p, q]
    (lo_h, hi_h), (lo_w, hi_w) = pads
    return full[:, lo_h : out_h - hi_h, lo_w : out_w - hi_w, :] + b


@pytest.mark.parametrize(
    "stride, pads, dilation, groups",
    [
        ((2, 3), ((1, 2), (0, 1)), (2, 1), 2),
        ((3, 2), ((2, 2), (1, 1)), (1, 2), 4),
    ],
)
def test_conv2d_forward_matches_numpy_loops(x64, stride, pads, dilation, groups):
    params = _params(0, (3, 2), 4 // groups, 8)
    x = _normal(jax.random.key(5), (2, 7, 6, 4))
    y = ops.conv2d(params, x, stride=stride, padding=pads, dilation=dilation, groups=groups)
    expected = _numpy_conv2d(*map(np.asarray, (params["w"], params["b"], x)), stride, pads, dilation, groups)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


def test_conv1d_is_conv2d_on_a_height_one_image(x64):
    params = _params(1, (3,), 2, 5)
    x = _normal(jax.random.key(2), (2, 11, 2))
    y1 = ops.conv1d(params, x, stride=2, padding=((2, 1),), dilation=2)
    params2 = {"w": params["w"][None], "b": params["b"]}
    y2 = ops.conv2d(params2, x[:, None], stride=(1, 2), padding=((0, 0), (2, 1)), dilation=(1, 2))
    np.testing.assert_allclose(y1, y2[:, 0], rtol=1e-13)


@pytest.mark.parametrize(
    "stride, pads, dilation, output_padding",
    [((2, 2), ((0, 0), (0, 0)), (1, 1), (0, 0)), ((2, 3), ((1, 0), (2, 1)), (1, 2), (1, 2))],
)
def test_conv_transpose2d_forward_matches_pytorch_definition(x64, stride, pads, dilation, output_padding):
    params = _params(3, (3, 3), 5, 4)  # conv_transpose2d maps 4 channels -> 5
    params["b"] = _normal(jax.random.key(9), (5,))
    x = _normal(jax.random.key(4), (2, 4, 3, 4))
    y = ops.conv_transpose2d(params, x, stride=stride, padding=pads, dilation=dilation, output_padding=output_padding)
    expected = _numpy_conv_transpose2d(
        *map(np.asarray, (params["w"], params["b"], x)), stride, pads, dilation, output_padding
    )
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("size, stride", [(7, 2), (8, 3)])
def test_same_padding_sizes(size, stride):
    x = jnp.ones((1, size, size, 2))
    y = ops.conv2d(_params(0, (3, 3), 2, 3, jnp.float32), x, stride=stride)
    assert y.shape[1:3] == (-(-size // stride),) * 2  # ceil(H / s)
    back = ops.conv_transpose2d({"w": jnp.ones((3, 3, 2, 3)), "b": jnp.zeros(2)}, y, stride=stride, padding="SAME")
    assert back.shape[1:3] == (y.shape[1] * stride,) * 2


# ------------------------------------------------------ conv2d <-> conv_transpose2d


@pytest.mark.parametrize(
    "options, size",
    [
        ({"stride": 2, "padding": "SAME"}, 8),
        ({"stride": (3, 2), "padding": ((1, 2), (0, 1)), "dilation": (1, 2)}, 10),
        ({"stride": 2, "padding": "VALID", "groups": 2}, 9),
    ],
)
def test_conv2d_and_conv_transpose2d_are_adjoint_both_ways(x64, options, size):
    """<conv2d(x), v> = <x, conv_transpose2d(v)>, and each op's input-VJP is the other op."""
    groups = options.get("groups", 1)
    w = _params(6, (3, 3), 4 // groups, 6)["w"]
    zero_bias = {"w": w, "b": jnp.zeros(6)}
    x = _normal(jax.random.key(7), (2, size, size, 4))
    y, conv_vjp = jax.vjp(lambda x: ops.conv2d(zero_bias, x, **options), x)
    v = _normal(jax.random.key(8), y.shape)
    pads = reference.conv.padding_pairs(
        options["padding"],
        (size, size),
        (3, 3),
        *(reference.conv.spatial_tuple(options.get(k, 1), 2) for k in ("stride", "dilation")),
    )
    stride = reference.conv.spatial_tuple(options.get("stride", 1), 2)
    dilation = reference.conv.spatial_tuple(options.get("dilation", 1), 2)
    output_padding = tuple(
        n + lo + hi - d * 2 - 1 - (m - 1) * s
        for n, m, s, d, (lo, hi) in zip((size, size), y.shape[1:3], stride, dilation, pads)
    )
    transpose_options = {"stride": stride, "padding": pads, "dilation": dilation, "groups": groups}
    transpose_options["output_padding"] = output_padding
    t_bias = {"w": w, "b": jnp.zeros(4)}
    xt = ops.conv_transpose2d(t_bias, v, **transpose_options)
    assert xt.shape == x.shape
    np.testing.assert_allclose(jnp.vdot(y, v), jnp.vdot(x, xt), rtol=1e-12)
    np.testing.assert_allclose(conv_vjp(v)[0], xt, rtol=1e-12, atol=1e-12)  # conv2d's backward is the transpose
    _, transpose_vjp = jax.vjp(lambda v: ops.conv_transpose2d(t_bias, v, **transpose_options), v)
    np.testing.assert_allclose(transpose_vjp(x)[0], y, rtol=1e-12, atol=1e-12)  # and the transpose's is conv2d


# -------------------------------------------------------- dtype, transforms, residuals


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32])
def test_dtype_is_preserved_forward_and_backward(dtype):
    params = _params(0, (3, 3), 2, 4, dtype)
    x = _normal(jax.random.key(1), (2, 6, 6, 2), dtype)
    y = ops.conv2d(params, x, stride=2)
    grads = jax.grad(lambda p, x: jnp.sum(ops.conv2d(p, x, stride=2).astype(jnp.float32)), argnums=(0, 1))(params, x)
    assert y.dtype == dtype
    assert all(leaf.dtype == dtype for leaf in jax.tree_util.tree_leaves(grads))
    t = ops.conv_transpose2d({"w": params["w"], "b": jnp.zeros(2, dtype)}, y, stride=2)
    assert t.dtype == dtype


def test_jit_vmap_and_checkpoint_give_the_eager_gradient():
    params = _params(0, (3, 3), 1, 2, jnp.float32)
    x = _normal(jax.random.key(1), (3, 5, 5, 1), jnp.float32)

    def loss(params, x):
        return jnp.sum(ops.conv2d(params, x, stride=2, padding=1) ** 2)

    eager = jax.grad(loss)(params, x)
    jitted = jax.jit(jax.grad(loss))(params, x)
    checkpointed = jax.grad(jax.checkpoint(loss))(params, x)
    per_example = jax.vmap(jax.grad(loss), in_axes=(None, 0))(params, x[:, None])
    summed = jax.tree_util.tree_map(lambda g: g.sum(0), per_example)
    for other in (jitted, checkpointed, summed):
        jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-5), eager, other)


def test_residuals_are_the_input_and_the_kernel():
    params = _params(0, (3, 3), 4, 8, jnp.float32)
    x = jnp.ones((2, 6, 6, 4))
    saved = residual_bytes(lambda p, x: ops.conv2d(p, x), params, x)
    assert saved["total"] == x.nbytes + params["w"].nbytes
    assert saved["intermediates"] == 0


# ------------------------------------------------------------------------ bad input

GOOD_PARAMS = {"w": jnp.ones((3, 3, 2, 4)), "b": jnp.ones(4)}
GOOD_X = jnp.ones((1, 5, 5, 2))
TRANSPOSE_PARAMS = {"w": jnp.ones((3, 3, 2, 4)), "b": jnp.ones(2)}  # maps 4 channels to 2


@pytest.mark.parametrize(
    "call, error, match",
    [
        (
            lambda: ops.conv2d(GOOD_PARAMS, jnp.ones((5, 5, 2))),
            ValueError,
            r"conv2d: x must have rank 4 .* \(5, 5, 2\)",
        ),
        (lambda: ops.conv2d(GOOD_PARAMS, jnp.ones((1, 5, 5, 3))), ValueError, r"conv2d: x has 3 channels .*expects 2"),
        (
            lambda: ops.conv2d(GOOD_PARAMS, jnp.ones((1, 2, 5, 2)), padding="VALID"),
            ValueError,
            r"conv2d: kernel \(3, 3\).*larger than the padded input.*\(1, 2, 5, 2\)",
        ),
        (
            lambda: ops.conv2d(GOOD_PARAMS, GOOD_X, dilation=3, padding="VALID"),
            ValueError,
            r"conv2d: kernel .*dilation \(3, 3\)",
        ),
        (lambda: ops.conv2d(GOOD_PARAMS, GOOD_X, stride=0), ValueError, r"conv2d: stride must be >= 1, got 0"),
        (lambda: ops.conv2d(GOOD_PARAMS, GOOD_X, stride=(1, -2)), ValueError, r"conv2d: stride must be >= 1"),
        (lambda: ops.conv2d(GOOD_PARAMS, GOOD_X, dilation=0), ValueError, r"conv2d: dilation must be >= 1, got 0"),
        (lambda: ops.conv2d(GOOD_PARAMS, GOOD_X, padding="FULL"), ValueError, r"conv2d: padding must be .*'FULL'"),
        (lambda: ops.conv2d(GOOD_PARAMS, GOOD_X, padding=-1), ValueError, r"conv2d: padding must be >= 0, got -1"),
        (
            lambda: ops.conv2d(GOOD_PARAMS, GOOD_X, padding=((1, 1),)),
            ValueError,
            r"conv2d: padding must be 2 \(lo, hi\)",
        ),
        (
            lambda: ops.conv2d(GOOD_PARAMS, GOOD_X, groups=3),
            ValueError,
            r"conv2d: groups=3 does not divide the 2 channels",
        ),
        (
            lambda: ops.conv2d({"w": jnp.ones((3, 3, 1, 3)), "b": jnp.ones(3)}, GOOD_X, groups=2),
            ValueError,
            r"conv2d: groups=2 does not divide the 3 output channels",
        ),
        (lambda: ops.conv2d(GOOD_PARAMS, GOOD_X, groups=0), ValueError, r"conv2d: groups must be a positive int"),
        (
            lambda: ops.conv2d({"w": jnp.ones((3, 3, 2, 4)), "b": jnp.ones(3)}, GOOD_X),
            ValueError,
            r"conv2d: b must have shape \(4,\)",
        ),
        (
            lambda: ops.conv2d({"w": jnp.ones((3, 3, 2, 4))}, GOOD_X),
            ValueError,
            r'conv2d: params must be a dict with keys "w" and "b"',
        ),
        (
            lambda: ops.conv2d(GOOD_PARAMS, jnp.ones((1, 5, 5, 2), jnp.int32)),
            TypeError,
            r"conv2d: x must be a floating-point",
        ),
        (
            lambda: ops.conv1d({"w": jnp.ones((3, 2, 4)), "b": jnp.ones(4)}, GOOD_X),
            ValueError,
            r"conv1d: x must have rank 3",
        ),
        (
            lambda: ops.conv_transpose2d(GOOD_PARAMS, jnp.ones((1, 4, 4, 2))),
            ValueError,
            r"conv_transpose2d: x has 2 channels .*expects 4",
        ),
        (
            lambda: ops.conv_transpose2d(TRANSPOSE_PARAMS, jnp.ones((1, 4, 4, 4)), stride=2, output_padding=2),
            ValueError,
            r"conv_transpose2d: output_padding must be < stride",
        ),
        (
            lambda: ops.conv_transpose2d(
                TRANSPOSE_PARAMS, jnp.ones((1, 4, 4, 4)), stride=2, padding="SAME", output_padding=1
            ),
            ValueError,
            r"conv_transpose2d: output_padding must be 0 with padding=\"SAME\"",
        ),
        (
            lambda: ops.conv_transpose2d(TRANSPOSE_PARAMS, jnp.ones((1, 1, 1, 4)), padding=2),
            ValueError,
            r"conv_transpose2d: padding .* leaves no output",
        ),
    ],
)
def test_bad_input_names_the_op_and_the_value(call, error, match):
    with pytest.raises(error, match=match):
        call()
