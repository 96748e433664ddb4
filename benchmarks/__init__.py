"""The benchmark suite: hand-written backward rules against autodiff and PyTorch.

Outside the installed package: run it from the repository root. ``python -m benchmarks``
runs every section and prints one table; ``python -m benchmarks.<section>`` runs one.
One module per concern: :mod:`benchmarks._timing` (round-robin wall time and its ratios),
:mod:`benchmarks._step` (the standard training-step row), :mod:`benchmarks._memory`
(compiled memory), :mod:`benchmarks._torch` (the optional PyTorch columns),
:mod:`benchmarks._machine` (where a result was measured), :mod:`benchmarks._heap` (glibc
heap tuning for steady timings), :mod:`benchmarks._tables` and :mod:`benchmarks._results`
(what is printed and written), :mod:`benchmarks._section` (one section's command line).

A section is a module ``benchmarks/<name>.py`` with::

    def run(tiny: bool = False, repeats: int = 10) -> dict:
        # {"section": "<name>", "rows": [row, ...], ...}: for a model's training step a row is
        # {"model": "lstm-b32-t100-h256", **compare_training_step(loss, params, *batch, ...)}
    def main(argv=None) -> int:
        return section_main("<name>", run, argv)   # python -m benchmarks.<name> [--tiny] [--repeats N]

``tiny=True`` must finish in seconds (the tests call it). Results go to ``results/bench/``
under a new name each run; nothing is ever overwritten.
"""
