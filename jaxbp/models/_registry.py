"""A registry of network builders, so scripts and the CLI can build models by name.

A builder is a function that takes keyword options only -- ``num_outputs`` (the
size of the last layer) plus its own options with defaults -- and returns an
:class:`jaxbp.nn.Layer`::

    @register_model("mlp")
    def mlp(*, num_outputs: int, depth: int = 2, width: int = 64, ...) -> nn.Layer: ...

    model = build_model("mlp", num_outputs=10, depth=3, width=128)

A new family registers itself by decorating its builder in its own module; list
that module in :data:`MODEL_MODULES` (below) so the registry imports it on first use (the
CLI reads its ``--model`` choices and option types from here, never by name).
``layout`` says which input layout the network expects (``"flat"`` (N, F),
``"nhwc"`` images or ``"sequence"`` token ids), so a data loader can hand it the right view.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from jaxbp import nn
from jaxbp.core import choose

__all__ = [
    "LAYOUTS",
    "MODEL_MODULES",
    "ModelSpec",
    "TrainingDefaults",
    "build_model",
    "coerce_options",
    "get_model",
    "model_names",
    "model_options",
    "register_model",
    "training_defaults",
]

Builder = Callable[..., nn.Layer]

# Input layouts: "flat" (N, F) features, "nhwc" images, "sequence" (N, T) integer token ids.
LAYOUTS = ("flat", "nhwc", "sequence")

# Modules that register builders when imported (one per family); loaded on first lookup.
MODEL_MODULES: tuple[str, ...] = (
    "jaxbp.models.perceptron",
    "jaxbp.models.transformer",
    "jaxbp.models.recurrent",
    "jaxbp.models.cnn",
)


class ModelSpec(NamedTuple):
    """A registered builder and what it needs."""

    name: str
    builder: Builder
    layout: str  # input layout the network expects: one of LAYOUTS
    description: str  # first line of the builder's docstring


class TrainingDefaults(NamedTuple):
    """How ``jaxbp train --model NAME`` trains when a flag is not given."""

    epochs: int = 10
    learning_rate: float = 1e-3
    batch_size: int = 64


# Settings that train each family well on its usual data set (docs/training-cli.md gives the
# accuracies they reach); a family not listed gets TrainingDefaults().
TRAINING_DEFAULTS: dict[str, TrainingDefaults] = {
    "mlp": TrainingDefaults(epochs=20, learning_rate=3e-3),
    "cnn": TrainingDefaults(epochs=20, learning_rate=3e-3),
    "resnet": TrainingDefaults(epochs=20, learning_rate=3e-3),
    "lstm": TrainingDefaults(epochs=30, learning_rate=3e-3),
    "transformer": TrainingDefaults(epochs=30, learning_rate=3e-3),
}

_REGISTRY: dict[str, ModelSpec] = {}
_modules_loaded = False


def register_model(name: str, *, layout: str = "flat") -> Callable[[Builder], Builder]:
    """Decorator: register ``builder`` under ``name``. Names are unique."""
    if layout not in LAYOUTS:
        raise ValueError(f"register_model: layout must be one of {LAYOUTS}, got {layout!r}")

    def decorate(builder: Builder) -> Builder:
        if name in _REGISTRY and _REGISTRY[name].builder is not builder:
            raise ValueError(
                f"register_model: a model named {name!r} is already registered ({_REGISTRY[name].builder.__module__})"
            )
        parameters = inspect.signature(builder).parameters
        if "num_outputs" not in parameters or any(
            p.kind is not inspect.Parameter.KEYWORD_ONLY for p in parameters.values()
        ):
            raise TypeError(f"register_model: builder {name!r} must take keyword-only options, including num_outputs")
        description = (inspect.getdoc(builder) or "").split("\n", 1)[0]
        _REGISTRY[name] = ModelSpec(name, builder, layout, description)
        return builder

    return decorate


def _load_modules() -> None:
    """Import every module of :data:`MODEL_MODULES` once (each registers its builders)."""
    global _modules_loaded
    if not _modules_loaded:
        for module in MODEL_MODULES:
            importlib.import_module(module)
        _modules_loaded = True


def model_names() -> list[str]:
    """Names of all registered builders, sorted."""
    _load_modules()
    return sorted(_REGISTRY)


def get_model(name: str) -> ModelSpec:
    """The :class:`ModelSpec` registered as ``name``; unknown names list the choices."""
    _load_modules()
    return choose("get_model", "model", name, _REGISTRY)


def training_defaults(name: str) -> TrainingDefaults:
    """The epochs, learning rate and batch size model ``name`` trains with by default."""
    return TRAINING_DEFAULTS.get(get_model(name).name, TrainingDefaults())


def model_options(name: str) -> dict[str, Any]:
    """A builder's options and their defaults (``num_outputs`` excluded: the data set fixes it)."""
    parameters = inspect.signature(get_model(name).builder).parameters
    return {k: p.default for k, p in parameters.items() if k != "num_outputs"}


def _coerce(model: str, key: str, text: str, default: Any) -> Any:
    kind = type(default) if default is not inspect.Parameter.empty and default is not None else str
    try:
        if kind is bool:
            lowered = text.strip().lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return lowered in ("true", "1", "yes")
        return kind(text)
    except ValueError:
        raise ValueError(f"model {model!r}: option {key}={text!r} is not a valid {kind.__name__}") from None


def coerce_options(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``options`` against builder ``name``; strings are converted to each option's
    type (that of its default: ``"3"`` -> 3, ``"true"`` -> True)."""
    accepted = model_options(name)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"model {name!r} has no option {unknown[0]!r}; its options are {sorted(accepted)}")
    return {k: _coerce(name, k, v, accepted[k]) if isinstance(v, str) else v for k, v in options.items()}


def build_model(name: str, *, num_outputs: int, **options: Any) -> nn.Layer:
    """Build the network registered as ``name`` with ``num_outputs`` outputs."""
    return get_model(name).builder(num_outputs=num_outputs, **coerce_options(name, options))
