"""Experiments that ship with jaxbp, as importable modules.

Each study module exposes the same three entry points, so the CLI and the thin scripts
in ``experiments/`` stay one-liners:

* ``add_arguments(parser)`` -- its command-line options on an ``argparse`` parser;
* ``run(args) -> int`` -- run it from parsed arguments (exit status);
* ``run_study(config, out_dir, progress=...)`` -- the programmatic entry point.

Studies:

* :mod:`jaxbp.studies.vanishing` (a package: configuration, measurement, training, report) --
  vanishing/exploding gradients measured against mean-field and free-probability theory
  (``jaxbp vanishing``, ``experiments/vanishing_gradients.py``).
"""
