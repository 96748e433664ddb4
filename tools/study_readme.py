"""Write the README's study section from the committed default report.

    python tools/study_readme.py [--check]

The lines between the README's ``<!-- study: begin -->`` and ``<!-- study: end -->`` markers are
the run line and the findings of ``docs/study/default/report.md``, verbatim, so the README
quotes the same run as the report; tests/test_docs.py checks that the committed README is what
this script writes.
"""

from __future__ import annotations

import argparse
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
REPORT = ROOT / "docs" / "study" / "default" / "report.md"
BEGIN, END = "<!-- study: begin -->", "<!-- study: end -->"


def study_section(report: str) -> str:
    """The README block: a pointer to the report, its run line and its findings."""
    run = re.search(r"^Run started .*$", report, re.MULTILINE)
    findings = re.search(r"^## Findings\n\n(.*?)\n\n## ", report, re.DOTALL | re.MULTILINE)
    if run is None or findings is None:
        raise ValueError(f"{REPORT}: no 'Run started' line or no '## Findings' section")
    return (
        f"{BEGIN}\n"
        "Findings of the default run, copied from [its report](docs/study/default/report.md) by "
        "`python tools/study_readme.py` (what each verdict means: [the study page](docs/study.md)). "
        f"{run.group(0)}\n\n{findings.group(1)}\n{END}"
    )


def rendered_readme(readme: str, report: str) -> str:
    """``readme`` with its study block replaced by :func:`study_section` of ``report``."""
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(readme):
        raise ValueError(f"{README}: no {BEGIN} ... {END} block")
    return pattern.sub(lambda _: study_section(report), readme)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the README is not what this script writes")
    args = parser.parse_args(argv)
    current = README.read_text()
    new = rendered_readme(current, REPORT.read_text())
    if new == current:
        print(f"{README}: the study section already matches {REPORT}; nothing to write")
        return 0 if args.check else 1
    if args.check:
        print(f"{README}: the study section differs from {REPORT}; run python tools/study_readme.py")
        return 1
    README.write_text(new)
    print(f"wrote the study section of {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
