"""Manual VJPs vs ``jax.grad`` through the reference (and PyTorch eager): the suite's model sections.

Kept for the old command; the measurement lives in :mod:`jaxbp.bench` and this runs
``jaxbp bench --sections mlp conv recurrent transformer attention`` with any further options
(``--tiny``, ``--repeats N``, ``--out-dir DIR``, ``--no-plot``).
"""

import sys

from jaxbp.bench.suite import main

if __name__ == "__main__":
    raise SystemExit(main(["--sections", "mlp", "conv", "recurrent", "transformer", "attention", *sys.argv[1:]]))
