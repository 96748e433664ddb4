"""Tests for jaxbp.data: offline data sets and the minibatch iterator."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.datasets import load_digits

from jaxbp import data
from jaxbp.data import Dataset, batches, digits, num_batches, stratified_split, two_spirals, xor

N_DIGITS = 1797


@pytest.fixture(scope="module")
def raw_digits():
    b = load_digits()
    return b.data / 16.0, b.target


def _row_keys(x):
    """One hashable key per row (exact bytes of the float64 row)."""
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float64).reshape(len(x), -1))
    return [row.tobytes() for row in x]


# --------------------------------------------------------------------------- digits


def test_digits_shapes_dtypes_ranges():
    ds = digits()
    assert isinstance(ds, Dataset)
    assert ds.x_train.shape[1:] == (64,) and ds.x_test.shape[1:] == (64,)
    assert ds.x_train.shape[0] == ds.y_train.shape[0]
    assert ds.x_test.shape[0] == ds.y_test.shape[0]
    assert ds.x_train.shape[0] + ds.x_test.shape[0] == N_DIGITS
    # 20% test, stratified: within a handful of 0.2 * 1797
    assert abs(ds.x_test.shape[0] - 0.2 * N_DIGITS) <= 10
    assert ds.x_train.dtype == np.float32 and ds.x_test.dtype == np.float32
    assert ds.y_train.dtype == np.int32 and ds.y_test.dtype == np.int32
    for x in (ds.x_train, ds.x_test):
        assert x.min() == 0.0 and x.max() == 1.0
    assert set(np.unique(ds.y_train)) == set(range(10))
    assert set(np.unique(ds.y_test)) == set(range(10))
    assert ds.num_classes == data.DIGITS_NUM_CLASSES == 10
    assert ds.train[0] is ds.x_train and ds.test[1] is ds.y_test


def test_digits_dtype_option():
    x, y = digits("test", dtype=np.float64)
    assert x.dtype == np.float64 and y.dtype == np.int32


def test_digits_values_match_sklearn(raw_digits):
    x_full, y_full = raw_digits
    train_idx, test_idx = stratified_split(y_full, 0.2, seed=3)
    ds = digits(seed=3, dtype=np.float64)
    np.testing.assert_array_equal(ds.x_train, x_full[train_idx])
    np.testing.assert_array_equal(ds.y_train, y_full[train_idx])
    np.testing.assert_array_equal(ds.x_test, x_full[test_idx])
    np.testing.assert_array_equal(ds.y_test, y_full[test_idx])


def test_digits_split_is_stratified(raw_digits):
    _, y_full = raw_digits
    ds = digits(test_fraction=0.25)
    full_counts = np.bincount(y_full, minlength=10)
    test_counts = np.bincount(ds.y_test, minlength=10)
    np.testing.assert_array_equal(test_counts, np.round(0.25 * full_counts).astype(int))
    np.testing.assert_array_equal(np.bincount(ds.y_train, minlength=10), full_counts - test_counts)


def test_digits_train_test_disjoint_and_cover_everything(raw_digits):
    x_full, y_full = raw_digits
    ds = digits(seed=7, dtype=np.float64)
    # every digits image is distinct, so a row identifies its original index
    full_keys = _row_keys(x_full)
    assert len(set(full_keys)) == N_DIGITS
    where = {k: i for i, k in enumerate(full_keys)}
    train_ids = [where[k] for k in _row_keys(ds.x_train)]
    test_ids = [where[k] for k in _row_keys(ds.x_test)]
    assert len(set(train_ids)) == len(train_ids)
    assert len(set(test_ids)) == len(test_ids)
    assert set(train_ids).isdisjoint(test_ids)
    assert sorted(train_ids + test_ids) == list(range(N_DIGITS))
    # labels travelled with their images
    np.testing.assert_array_equal(ds.y_train, y_full[train_ids])
    np.testing.assert_array_equal(ds.y_test, y_full[test_ids])


def test_digits_split_deterministic_per_seed_and_differs_across_seeds():
    a, b, c = digits(seed=0), digits(seed=0), digits(seed=1)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a.y_train, c.y_train)
    assert set(_row_keys(a.x_test)) != set(_row_keys(c.x_test))
    # "train"/"test" give the same parts as "both"
    xtr, ytr = digits("train", seed=0)
    xte, yte = digits("test", seed=0)
    np.testing.assert_array_equal(xtr, a.x_train)
    np.testing.assert_array_equal(ytr, a.y_train)
    np.testing.assert_array_equal(xte, a.x_test)
    np.testing.assert_array_equal(yte, a.y_test)


def test_digits_returns_fresh_arrays():
    a = digits(seed=0)
    a.x_train[:] = -1.0
    b = digits(seed=0)
    assert b.x_train.min() == 0.0


def test_digits_nhwc_equals_flat_reshaped(raw_digits):
    flat = digits(seed=2, layout="flat")
    nhwc = digits(seed=2, layout="nhwc")
    assert nhwc.x_train.shape == (flat.x_train.shape[0], 8, 8, 1)
    assert nhwc.x_test.shape == (flat.x_test.shape[0], 8, 8, 1)
    np.testing.assert_array_equal(nhwc.x_train, flat.x_train.reshape(-1, 8, 8, 1))
    np.testing.assert_array_equal(nhwc.x_test, flat.x_test.reshape(-1, 8, 8, 1))
    np.testing.assert_array_equal(nhwc.y_train, flat.y_train)
    # the image really is the 8x8 picture (row-major), not a transposed view
    idx, _ = stratified_split(raw_digits[1], 0.2, seed=2)
    images = load_digits().images / 16.0
    np.testing.assert_array_equal(nhwc.x_train[..., 0], images[idx].astype(np.float32))


def test_stratified_split_properties():
    labels = np.array([0] * 5 + [1] * 3 + [2] * 2 + [3])
    tr, te = stratified_split(labels, 0.5, seed=0)
    assert tr.dtype == np.int64 and te.dtype == np.int64
    assert sorted(np.concatenate([tr, te]).tolist()) == list(range(labels.size))
    # every class with >= 2 members appears on both sides
    for c in (0, 1, 2):
        assert c in labels[tr] and c in labels[te]


# --------------------------------------------------------------------------- xor


def test_xor_shapes_and_rule():
    x, y = xor(257, seed=4)
    assert x.shape == (257, 2) and x.dtype == np.float32
    assert y.shape == (257, 1) and y.dtype == np.float32
    assert set(np.unique(y)) == {0.0, 1.0}
    expected = (x[:, 0] * x[:, 1] > 0).astype(np.float32)
    np.testing.assert_array_equal(y[:, 0], expected)
    expected_x = jax.random.normal(jax.random.key(4), (257, 2), dtype=jnp.float32)
    np.testing.assert_array_equal(x, np.asarray(expected_x))


def test_xor_deterministic_and_seeded():
    x1, y1 = xor(50, seed=0)
    x2, y2 = xor(50, seed=0)
    x3, _ = xor(50, seed=1)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(x1, x3)
    # roughly standard normal and roughly balanced
    x, y = xor(4000, seed=0)
    assert abs(float(x.mean())) < 0.1 and abs(float(x.std()) - 1.0) < 0.1
    assert 0.4 < float(y.mean()) < 0.6


# --------------------------------------------------------------------------- spirals


@pytest.mark.parametrize("n", [200, 201])
def test_two_spirals_shapes_and_balance(n):
    x, y = two_spirals(n, seed=0)
    assert x.shape == (n, 2) and x.dtype == np.float32
    assert y.shape == (n,) and y.dtype == np.int32
    counts = np.bincount(y, minlength=2)
    assert counts.size == 2 and abs(int(counts[0]) - int(counts[1])) == n % 2
    assert np.all(np.isfinite(x))
    # rows are shuffled, not sorted by class
    assert not np.all(np.diff(y) >= 0)


def test_two_spirals_geometry_and_determinism():
    x, y = two_spirals(400, noise=0.0, seed=5)
    r = np.linalg.norm(x, axis=1)
    assert r.max() <= 1.0 + 1e-6
    # noiseless: the angle (mod 2*pi) is t + pi*label with t = 2*pi*turns*r
    t = 2 * np.pi * 1.5 * r
    angle = np.arctan2(x[:, 1], x[:, 0])
    diff = np.angle(np.exp(1j * (angle - t - np.pi * y)))
    assert np.max(np.abs(diff)) < 1e-4
    x2, y2 = two_spirals(400, noise=0.0, seed=5)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    x3, _ = two_spirals(400, noise=0.0, seed=6)
    assert not np.array_equal(x, x3)
    xn, yn = two_spirals(400, noise=0.1, seed=5)
    np.testing.assert_array_equal(y, yn)
    assert not np.allclose(x, xn)


# --------------------------------------------------------------------------- batches


def _collect(it):
    return list(it)


@pytest.mark.parametrize("drop_remainder", [False, True])
def test_batches_cover_each_example_once(drop_remainder):
    n, b = 23, 5
    x = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    y = np.arange(n, dtype=np.int32)
    got = _collect(batches((x, y), b, key=jax.random.key(0), drop_remainder=drop_remainder))
    assert len(got) == num_batches(n, b, drop_remainder)
    sizes = [yb.shape[0] for _, yb in got]
    if drop_remainder:
        assert sizes == [5, 5, 5, 5]
    else:
        assert sizes == [5, 5, 5, 5, 3]
    ids = np.concatenate([yb for _, yb in got])
    assert len(set(ids.tolist())) == ids.size  # no repeats
    if not drop_remainder:
        assert sorted(ids.tolist()) == list(range(n))
    for xb, yb in got:
        assert isinstance(xb, np.ndarray)
        np.testing.assert_array_equal(xb, x[yb])  # rows stay paired
    assert not np.array_equal(ids, np.arange(ids.size))  # actually shuffled


def test_batches_same_key_same_order_different_key_different_order():
    y = np.arange(100)

    def order(key):
        return np.concatenate(_collect(batches(y, 16, key=key)))

    np.testing.assert_array_equal(order(jax.random.key(1)), order(jax.random.key(1)))
    np.testing.assert_array_equal(order(jax.random.PRNGKey(1)), order(jax.random.PRNGKey(1)))
    np.testing.assert_array_equal(order(3), order(jax.random.key(3)))  # int seed == key(seed)
    assert not np.array_equal(order(jax.random.key(1)), order(jax.random.key(2)))
    np.testing.assert_array_equal(order(jax.random.key(1)), np.asarray(jax.random.permutation(jax.random.key(1), 100)))


def test_batches_no_shuffle_is_in_order_and_pytree():
    x = jnp.arange(10.0).reshape(10, 1)
    tree = {"x": x, "aux": (np.arange(10), np.ones((10, 2, 2)))}
    got = _collect(batches(tree, 4, shuffle=False))
    assert len(got) == 3
    assert [g["x"].shape[0] for g in got] == [4, 4, 2]
    assert isinstance(got[0]["x"], jax.Array)
    assert set(got[0].keys()) == {"x", "aux"} and isinstance(got[0]["aux"], tuple)
    np.testing.assert_array_equal(np.concatenate([g["aux"][0] for g in got]), np.arange(10))
    np.testing.assert_array_equal(np.concatenate([np.asarray(g["x"]) for g in got]), np.asarray(x))
    assert got[2]["aux"][1].shape == (2, 2, 2)


def test_batches_jax_arrays_shuffled():
    x = jnp.arange(12.0)
    got = _collect(batches(x, 5, key=0, drop_remainder=True))
    assert len(got) == 2 and all(g.shape == (5,) for g in got)
    vals = np.concatenate([np.asarray(g) for g in got])
    assert len(set(vals.tolist())) == 10


def test_batches_is_reiterable_per_call():
    y = np.arange(7)
    it = batches(y, 3, key=0)
    first = _collect(it)
    assert len(first) == 3
    assert _collect(it) == []  # an iterator is exhausted after one epoch


@pytest.mark.parametrize(
    "n,b,drop,expected", [(0, 3, False, 0), (10, 3, False, 4), (10, 3, True, 3), (9, 3, False, 3), (2, 5, True, 0)]
)
def test_num_batches(n, b, drop, expected):
    assert num_batches(n, b, drop) == expected


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: digits("validation"), r"digits: split .*'validation'"),
        (lambda: digits(layout="nchw"), r"digits: layout .*'nchw'"),
        (lambda: digits(test_fraction=0.0), r"digits: test_fraction .*0\.0"),
        (lambda: digits(test_fraction=1.0), r"digits: test_fraction .*1\.0"),
        (lambda: digits(test_fraction=-0.5), r"digits: test_fraction .*-0\.5"),
        (lambda: digits(dtype=np.int32), r"digits: dtype"),
        (lambda: digits(seed=-1), r"digits: seed .*-1"),
        (lambda: stratified_split(np.zeros((3, 2)), 0.5), r"stratified_split: labels .*\(3, 2\)"),
        (lambda: xor(0), r"xor: num_samples .*0"),
        (lambda: two_spirals(1), r"two_spirals: num_samples .*1"),
        (lambda: two_spirals(10, noise=-0.1), r"two_spirals: noise .*-0\.1"),
        (lambda: batches(np.zeros(4), 0, key=0), r"batches: batch_size .*0"),
        (lambda: batches(np.zeros(4), -2, key=0), r"batches: batch_size .*-2"),
        (lambda: batches(np.zeros(4), 2.5, key=0), r"batches: batch_size .*2\.5"),
        (lambda: batches((np.zeros(4), np.zeros(5)), 2, key=0), r"batches: .*leading dims \[4, 5\]"),
        (lambda: batches(np.float32(1.0), 2, key=0), r"batches: .*scalar"),
        (lambda: batches((), 2, key=0), r"batches: data has no arrays"),
        (lambda: batches(np.zeros(4), 2), r"batches: shuffle=True needs key"),
        (lambda: num_batches(10, 0), r"num_batches: batch_size .*0"),
        (lambda: num_batches(-1, 2), r"num_batches: num_examples .*-1"),
    ],
)
def test_errors_name_function_and_value(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_load_task_names_the_data_sets_that_fit_the_model():
    with pytest.raises(
        ValueError, match=r"'digits' gives 'flat' or 'nhwc' inputs, but the model reads 'sequence'; .*: chars"
    ):
        data.load_task("digits", "sequence")
