"""``python -m jaxbp.studies.vanishing.report RESULTS_JSON [--depths 50]``: print a saved run's theory-vs-measurement table."""

from jaxbp.studies.vanishing._report import main

if __name__ == "__main__":
    raise SystemExit(main())
