"""The vanishing/exploding-gradient study: per-layer gradients of deep sigmoid, tanh and
ReLU networks under five initializations, measured with jaxbp's hand-written backward
rules and compared with mean-field theory; remedies (residual connections, batch norm,
He init, criticality), gradient clipping, and training curves on digits.

Run ``python experiments/vanishing_gradients.py`` (< 5 minutes on 2 CPU cores; ``--full``
for the complete grid, ``--help`` for the options).  Same as ``jaxbp vanishing``.
Writes figures, ``results.json``, ``report.md`` and ``slope_table.md`` into
``results/vanishing/`` (it refuses to overwrite earlier results unless ``--overwrite``).
The logic lives in :mod:`jaxbp.studies.vanishing`.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from jaxbp.studies.vanishing import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
