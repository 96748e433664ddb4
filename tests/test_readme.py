"""The README: short, its example runs verbatim, its links resolve, and CI runs its test command.

The documentation proper lives in docs/ (tests/test_docs.py builds it and runs its code).
"""

from __future__ import annotations

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)
COMMANDS = re.findall(r"^    (python3 -m venv .*)$", README, flags=re.MULTILINE)


def test_readme_fits_on_two_screens():
    assert len(README.splitlines()) <= 150


def test_readme_has_one_python_example():
    assert len(BLOCKS) == 1


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # anything an example writes lands in a scratch folder
    exec(compile(BLOCKS[index], f"README.md python block {index}", "exec"), {"__name__": "__readme__"})


def test_relative_links_resolve_and_no_images():
    # a relative image breaks wherever the package page is rendered (PyPI): the figures live on the site
    assert not re.search(r"!\[[^\]]*\]\(", README)
    targets = [target for target in re.findall(r"\]\(([^)]+)\)", README) if "://" not in target]
    assert targets
    missing = [target for target in targets if not (ROOT / target.split("#")[0]).exists()]
    assert not missing, f"README links to missing files: {missing}"


def test_ci_runs_exactly_the_readme_test_command():
    study, checks = COMMANDS
    assert study.endswith("jaxbp vanishing")
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert ci[-1] == checks
