"""``python -m jaxbp.cli``: the ``jaxbp`` command line."""

import sys

from jaxbp.cli import main

sys.exit(main())
