"""``python -m jaxbp.bench``: the whole benchmark suite (same as ``jaxbp bench``)."""

from jaxbp.bench.suite import main

raise SystemExit(main())
