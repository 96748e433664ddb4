"""How :func:`jaxbp.train.fit` trains: the options that define a run (and must match to resume it)."""

from __future__ import annotations

import dataclasses
from typing import Any

import optax

from jaxbp.precision import Policy, get_policy
from jaxbp.train._objectives import Objective, get_objective, make_optimizer
from jaxbp.validation import positive_int, static_int


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How :func:`fit` trains. The fields except ``epochs`` and ``eval_batch_size``
    must match to resume a run from its checkpoint."""

    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    clip_norm: float | None = None
    accumulate: int = 1
    precision: str = "f32"
    loss: str = "softmax_cross_entropy"
    seed: int = 0
    shuffle: bool = True
    eval_batch_size: int = 1024

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "accumulate", "eval_batch_size"):
            positive_int("TrainConfig", name, getattr(self, name))
        static_int("TrainConfig", "seed", self.seed, minimum=0)
        # Names are looked up once, here; fit and the step use the resolved objects.
        resolved = {
            "_optimizer": make_optimizer(
                self.learning_rate, name=self.optimizer, clip_norm=self.clip_norm, accumulate=self.accumulate
            ),
            "_policy": get_policy(self.precision),
            "_objective": get_objective(self.loss),
        }
        for name, value in resolved.items():
            object.__setattr__(self, name, value)

    def to_dict(self) -> dict[str, Any]:
        """The config as a JSON-ready dict."""
        return dataclasses.asdict(self)

    def optimizer_transform(self) -> optax.GradientTransformation:
        """The optax transform of this config (:func:`make_optimizer` with its settings)."""
        return self._optimizer  # type: ignore[attr-defined]

    @property
    def policy(self) -> Policy:
        """The precision :class:`jaxbp.precision.Policy` named by ``precision``."""
        return self._policy  # type: ignore[attr-defined]

    @property
    def objective(self) -> Objective:
        """The :class:`Objective` named by ``loss``."""
        return self._objective  # type: ignore[attr-defined]
