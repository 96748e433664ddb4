"""The shared hyper-parameter checks (jaxbp.validation) and the layers, ops and trainers that use them."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from jaxbp import models, nn, ops, train
from jaxbp.models.transformer import transformer_lm
from jaxbp.validation import HyperparameterError, optional_positive_int, positive_int, static_bool, static_int


@pytest.mark.parametrize("value", [2, np.int64(2), np.int32(2), np.uint8(2), jnp.asarray(2)])
def test_integral_numpy_and_jax_scalars_are_accepted_as_plain_ints(value):
    result = positive_int("dense", "out_features", value)
    assert result == 2 and type(result) is int


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (True, "dense: out_features must be an int, got the bool True"),
        (np.bool_(True), "dense: out_features must be an int, got the bool True"),
        (2.0, "dense: out_features must be a static int, got float 2.0"),
        ("2", "dense: out_features must be a static int, got str '2'"),
        (None, "dense: out_features must be a static int, got NoneType None"),
        (0, "dense: out_features must be a positive int, got 0"),
        (np.int64(-3), "dense: out_features must be a positive int, got -3"),
    ],
)
def test_bools_floats_and_non_positive_values_are_refused_naming_the_op(value, message):
    with pytest.raises(HyperparameterError) as caught:
        positive_int("dense", "out_features", value)
    assert str(caught.value) == message
    assert isinstance(caught.value, TypeError) and isinstance(caught.value, ValueError)


def test_int_ranges_name_their_bounds():
    assert static_int("op", "n", 0, minimum=0) == 0 and static_int("op", "n", 5, minimum=0, maximum=5) == 5
    with pytest.raises(ValueError, match=r"op: n must be an int >= 0, got -1"):
        static_int("op", "n", -1, minimum=0)
    with pytest.raises(ValueError, match=r"op: n must be an int in \[1, 4\], got 5"):
        static_int("op", "n", 5, minimum=1, maximum=4)
    with pytest.raises(ValueError, match=r"op: n must be an int <= 4, got 9"):
        static_int("op", "n", 9, maximum=4)
    assert optional_positive_int("op", "n", None) is None and optional_positive_int("op", "n", np.int64(3)) == 3


def test_flags_must_be_bools():
    assert static_bool("gelu", "approximate", np.bool_(True)) is True
    with pytest.raises(TypeError, match="gelu: approximate must be a bool, got int 1"):
        ops.gelu(jnp.ones(3), approximate=1)


@pytest.mark.parametrize(
    ("build", "op"),
    [
        (lambda n: nn.dense(n), "dense"),
        (lambda n: nn.conv2d(n, 3), "conv2d"),
        (lambda n: nn.lstm(n), "lstm"),
        (lambda n: nn.embedding(n, 4), "embedding"),
        (lambda n: nn.multi_head_attention(n), "multi_head_attention"),
        (lambda n: nn.position_embedding(n), "position_embedding"),
        (lambda n: models.mlp([4, n]), "mlp"),
        (lambda n: transformer_lm(vocab_size=5, dim=4, num_heads=1, depth=n), "transformer_lm"),
        (lambda n: train.make_optimizer(0.1, name="sgd", accumulate=n), "make_optimizer"),
    ],
)
def test_every_factory_takes_numpy_ints_and_refuses_floats(build, op):
    build(np.int64(2))  # accepted like a Python int
    with pytest.raises(ValueError, match=f"{op}: .* must be a static int, got float 2.5"):
        build(2.5)
