"""Training on top of the hand-written backward rules: objectives, a jit step, ``fit``.

From the inside out: :mod:`._objectives` (losses, accuracies and optimizers by name),
:mod:`._step` (``loss_and_grads``, ``make_train_step``, ``evaluate``), :mod:`._guard`
(the non-finite guard's message) and :mod:`._resume` (checkpoint settings, where a run starts) and :mod:`._fit` (epochs).
"""

from jaxbp.train._config import TrainConfig
from jaxbp.train._fit import FitResult, fit
from jaxbp.train._guard import NonFiniteError
from jaxbp.train._objectives import (
    Objective,
    get_objective,
    make_optimizer,
    objective_names,
    optimizer_names,
)
from jaxbp.train._parallel import (
    DataParallel,
    check_batch_size,
    data_parallel,
    parallel_train_step,
    shard_batch,
    shard_state,
    state_shardings,
)
from jaxbp.train._resume import CheckpointConfig, check_run_length
from jaxbp.train._step import (
    Batch,
    LossAndGrads,
    StepMetrics,
    TrainState,
    evaluate,
    init_train_state,
    loss_and_grads,
    make_train_step,
)
from jaxbp.train._tbptt import ChunkGradients, make_truncated_bptt_step, truncated_bptt_gradients

__all__ = [
    "Batch",
    "CheckpointConfig",
    "ChunkGradients",
    "DataParallel",
    "FitResult",
    "LossAndGrads",
    "NonFiniteError",
    "Objective",
    "StepMetrics",
    "TrainConfig",
    "TrainState",
    "check_batch_size",
    "check_run_length",
    "data_parallel",
    "evaluate",
    "fit",
    "get_objective",
    "init_train_state",
    "loss_and_grads",
    "make_optimizer",
    "make_train_step",
    "make_truncated_bptt_step",
    "objective_names",
    "optimizer_names",
    "parallel_train_step",
    "shard_batch",
    "shard_state",
    "state_shardings",
    "truncated_bptt_gradients",
]
