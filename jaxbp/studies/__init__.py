"""Experiments that ship with jaxbp, as importable modules.

Each study module exposes the same three entry points, so the CLI and the thin scripts
in ``experiments/`` stay one-liners:

* ``add_arguments(parser)`` -- its command-line options on an ``argparse`` parser;
* ``run(args) -> int`` -- run it from parsed arguments (exit status);
* ``run_study(config, out_dir, progress=...)`` -- the programmatic entry point.

Studies:

* :mod:`jaxbp.studies.vanishing` -- vanishing/exploding gradients measured against the
  mean-field theory (``jaxbp vanishing``, ``experiments/vanishing_gradients.py``).
"""
