"""Model builders and their registry, so scripts and the CLI can build models by name.

The registry (:mod:`jaxbp.models._registry`) explains how a family registers its
builders; each family lives in its own module here, listed in
:data:`jaxbp.models._registry.MODEL_MODULES`.
"""

from jaxbp.models._registry import (
    LAYOUTS,
    MODEL_MODULES,
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
