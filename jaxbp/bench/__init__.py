"""The benchmark suite: hand-written backward rules against autodiff and PyTorch.

``jaxbp bench`` (or ``python -m jaxbp.bench``) runs every section and prints one table;
``python -m jaxbp.bench.<section>`` runs one. The shared measuring primitives live in
:mod:`jaxbp.bench._measure` and are re-exported here.
"""

from jaxbp.bench._measure import (
    RESULTS_DIR,
    TORCH_SKIP_MESSAGE,
    Timing,
    compare_training_step,
    compiled_memory,
    format_table,
    machine_info,
    max_relative_difference,
    nbytes,
    new_path,
    optional_torch,
    residual_bytes,
    section_main,
    sgd_step,
    step_table,
    thread_count,
    time_beside_torch,
    time_variants,
    write_json,
)

__all__ = [
    "RESULTS_DIR",
    "TORCH_SKIP_MESSAGE",
    "Timing",
    "compare_training_step",
    "compiled_memory",
    "format_table",
    "machine_info",
    "max_relative_difference",
    "nbytes",
    "new_path",
    "optional_torch",
    "residual_bytes",
    "section_main",
    "sgd_step",
    "step_table",
    "thread_count",
    "time_beside_torch",
    "time_variants",
    "write_json",
]
