"""The vanishing/exploding-gradient study: per-layer gradients of deep sigmoid, tanh and
ReLU networks measured with jaxbp's hand-written backward rules against mean-field theory,
remedies, clipping with a learning-rate-matched control, Jacobian spectra against free
probability, signal propagation and trainability, and finite-width fluctuations.

Run ``python experiments/vanishing_gradients.py`` (same as ``jaxbp vanishing``; ``--full``
for the larger grid, ``--help`` for the options). Writes figures, ``results.json``,
``report.md`` and ``slope_table.md`` into a new ``results/vanishing/run-NNN`` (it refuses to
overwrite earlier results unless ``--overwrite``). The logic lives in :mod:`jaxbp.studies.vanishing`.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from jaxbp.studies.vanishing import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
