"""jaxbp.models: the builder registry and the mlp builder."""

import sys

import jax
import numpy as np
import pytest

from jaxbp import models, nn
from jaxbp.models import _registry


@pytest.fixture
def registry(monkeypatch):
    """A scratch copy of the registry, restored after the test."""
    monkeypatch.setattr(_registry, "_REGISTRY", dict(_registry._REGISTRY))
    return _registry._REGISTRY


def test_mlp_is_registered_and_unknown_names_list_the_choices():
    assert "mlp" in models.model_names()
    spec = models.get_model("mlp")
    assert spec.layout == "flat" and spec.description.startswith("A multi-layer perceptron")
    with pytest.raises(ValueError, match=r"unknown model 'vgg'; choose one of \[.*'mlp'.*\]"):
        models.get_model("vgg")
    assert models.model_options("mlp") == {
        "depth": 2, "width": 64, "activation": "relu", "init": "glorot_normal",
        "residual": False, "batch_norm": False, "dropout": 0.0,
    }  # fmt: skip


def test_mlp_builder_shapes():
    def shapes(model, input_shape):
        params = jax.eval_shape(lambda key: model.init(key, input_shape)[0], jax.random.key(0))
        return [leaf.shape for leaf in jax.tree_util.tree_leaves(params)]

    model = models.build_model("mlp", num_outputs=4, depth=3, width=7)
    assert [s for s in shapes(model, (5, 6)) if len(s) == 2] == [(6, 7), (7, 7), (7, 7), (7, 4)]
    linear = models.build_model("mlp", num_outputs=3, depth=0)  # no hidden layer: logistic regression
    assert shapes(linear, (2, 6)) == [(3,), (6, 3)]


def test_residual_mlp_computes_skip_connections():
    model = models.build_model("mlp", num_outputs=2, depth=2, width=4, residual=True, init="he_normal")
    params, _ = model.init(jax.random.key(1), (3, 5))
    dense = [
        leaf
        for leaf in jax.tree_util.tree_leaves(params, is_leaf=lambda d: isinstance(d, dict) and "w" in d)
        if isinstance(leaf, dict)
    ]
    x = np.asarray(jax.random.normal(jax.random.key(2), (3, 5)))
    relu = lambda z: np.maximum(z, 0)  # noqa: E731
    h1 = relu(x @ dense[0]["w"] + dense[0]["b"])
    h2 = h1 + relu(h1 @ dense[1]["w"] + dense[1]["b"])  # the second hidden layer is x + act(dense(x))
    expected = h2 @ dense[2]["w"] + dense[2]["b"]
    np.testing.assert_allclose(jax.jit(model.apply)(params, x), expected, rtol=1e-5, atol=1e-6)


def test_batch_norm_and_dropout_options():
    model = models.build_model("mlp", num_outputs=2, depth=1, width=4, batch_norm=True, dropout=0.5)
    params, _ = model.init(jax.random.key(0), (8, 3))
    state = model.init_state(params)
    x = jax.random.normal(jax.random.key(1), (8, 3))
    apply = jax.jit(lambda key: model.forward(params, x, state, train=True, key=key))
    y0, _ = apply(jax.random.key(0))
    y1, new_state = apply(jax.random.key(1))
    assert not np.allclose(y0, y1)  # dropout masks differ
    assert not all(
        np.allclose(a, b) for a, b in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(new_state))
    )
    plain = models.build_model("mlp", num_outputs=2)
    assert jax.tree_util.tree_leaves(plain.init_state(plain.init(jax.random.key(0), (8, 3))[0])) == []


def test_coerce_options_converts_strings_to_the_option_types():
    options = models.coerce_options(
        "mlp", {"depth": "3", "dropout": "0.25", "residual": "true", "batch_norm": "0", "activation": "tanh"}
    )
    assert options == {"depth": 3, "dropout": 0.25, "residual": True, "batch_norm": False, "activation": "tanh"}
    assert models.coerce_options("mlp", {"width": 12}) == {"width": 12}  # non-strings pass through
    with pytest.raises(ValueError, match=r"option depth='three' is not a valid int"):
        models.coerce_options("mlp", {"depth": "three"})
    with pytest.raises(ValueError, match=r"option residual='maybe' is not a valid bool"):
        models.coerce_options("mlp", {"residual": "maybe"})
    with pytest.raises(
        ValueError, match=r"model 'mlp' has no option 'kernel'; its options are \['activation', 'batch_norm'"
    ):
        models.build_model("mlp", num_outputs=2, kernel=3)
    with pytest.raises(ValueError, match="depth"):
        models.build_model("mlp", num_outputs=2, depth=-1)


def test_register_model_validates_builders(registry):
    @models.register_model("tiny")
    def tiny(*, num_outputs: int, scale: float = 1.0) -> nn.Layer:
        """A single dense layer."""
        return nn.dense(num_outputs)

    assert "tiny" in models.model_names() and models.model_options("tiny") == {"scale": 1.0}
    assert models.build_model("tiny", num_outputs=3, scale="2.5").init(jax.random.key(0), (1, 2))[1] == (1, 3)
    models.register_model("tiny")(tiny)  # re-registering the same builder is harmless
    with pytest.raises(ValueError, match="already registered"):
        models.register_model("tiny")(lambda *, num_outputs: nn.dense(num_outputs))
    with pytest.raises(TypeError, match="keyword-only options, including num_outputs"):
        models.register_model("positional")(lambda num_outputs: nn.dense(num_outputs))
    with pytest.raises(ValueError, match="layout"):
        models.register_model("bad", layout="nchw")


FAKE_MODULE = '''
from jaxbp import models, nn


@models.register_model("fake_conv", layout="nhwc")
def fake_conv(*, num_outputs: int, channels: int = 4):
    """A stand-in convolutional network."""
    return nn.serial(nn.flatten(), nn.dense(num_outputs))
'''


def test_builders_in_listed_modules_register_on_first_use(registry, monkeypatch, tmp_path):
    (tmp_path / "fake_conv_models.py").write_text(
        FAKE_MODULE
    )  # registers itself on import, as a future conv module would
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(_registry, "MODEL_MODULES", ("fake_conv_models",))
    monkeypatch.setattr(_registry, "_modules_loaded", False)
    try:
        assert "fake_conv" not in registry
        assert "fake_conv" in models.model_names()  # imported on first use
        assert models.get_model("fake_conv").layout == "nhwc"
        assert models.build_model("fake_conv", num_outputs=10).init(jax.random.key(0), (2, 8, 8, 1))[1] == (2, 10)
    finally:
        sys.modules.pop("fake_conv_models", None)
