"""Model builders and their registry, so scripts and the CLI can build models by name.

The registry (:mod:`jaxbp.models._registry`) explains how a family registers its
builders; each family lives in its own module here, listed in :data:`MODEL_MODULES`.
"""

from jaxbp.models._registry import (
    LAYOUTS,
    ModelSpec,
    TrainingDefaults,
    build_model,
    coerce_options,
    get_model,
    model_names,
    model_options,
    register_model,
    training_defaults,
)
from jaxbp.models.perceptron import mlp

# Modules that register builders when imported (one per family); loaded on first lookup.
MODEL_MODULES: tuple[str, ...] = (
    "jaxbp.models.perceptron",
    "jaxbp.models.transformer",
    "jaxbp.models.recurrent",
    "jaxbp.models.cnn",
)

__all__ = [
    "LAYOUTS",
    "MODEL_MODULES",
    "ModelSpec",
    "TrainingDefaults",
    "build_model",
    "coerce_options",
    "get_model",
    "mlp",
    "model_names",
    "model_options",
    "register_model",
    "training_defaults",
]
