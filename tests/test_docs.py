"""The documentation site: it builds with no warning, and its code runs as written.

* ``mkdocs build --strict`` (mkdocs.yml sets every link/nav check to warn, and strict
  mode turns a warning into a failure): broken links, pages missing from the nav and
  docstrings mkdocstrings cannot render fail here; and each API page shows every name in
  its module's ``__all__``.
* Every fenced block opened with exactly three backticks and ``python`` on every page
  under docs/ runs, top to bottom, in one namespace per page, from a scratch directory.
  A block that is only a fragment is opened with ``python title="fragment"`` and is not
  run; any other ``python``/``py`` info string is an error, so no block escapes silently.
  A page whose examples need an optional package says so in a comment,
  ``<!-- requires: flax equinox -->``, and is skipped when one is not installed.
* docs/performance.md is what tools/performance_page.py writes from the JSON it names, and
  the README's study section is what tools/study_readme.py copies from the default report.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pathlib
import re
import subprocess
import sys
import types

import jax
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(path.relative_to(DOCS).as_posix() for path in DOCS.rglob("*.md"))
FENCE = re.compile(r"^(`{3,})(.*)$")
FRAGMENT = 'python title="fragment"'
REQUIRES = re.compile(r"<!--\s*requires:([^>]*)-->")


def python_blocks(text: str, page: str) -> list[tuple[int, str]]:
    """``(line number of the block's first line, code)`` for each block to run."""
    blocks, lines, index = [], text.splitlines(), 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        ticks, info = opening.group(1), opening.group(2).strip()
        end = next((j for j in range(index + 1, len(lines)) if lines[j].strip() == ticks), None)
        if end is None:
            raise AssertionError(f"{page}:{index + 1}: the code block opened here is never closed")
        if info == "python":
            blocks.append((index + 2, "\n".join(lines[index + 1 : end])))
        elif info.split(" ", 1)[0] in ("python", "py", "python3", "pycon") and info != FRAGMENT:
            raise AssertionError(
                f"{page}:{index + 1}: code block '{ticks}{info}': write '{ticks}python' (run by the tests) "
                f"or '{ticks}{FRAGMENT}' (not run)"
            )
        index = end + 1
    return blocks


def test_site_builds_in_strict_mode_without_warnings(tmp_path):
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "WARNING" not in output, output
    for page in sorted((DOCS / "api").glob("*.md")):
        if page.stem == "index":
            continue
        module = importlib.import_module(f"jaxbp.{page.stem}")
        html = (tmp_path / "site" / "api" / page.stem / "index.html").read_text()
        rendered = {anchor.rsplit(".", 1)[-1] for anchor in re.findall(rf'id="jaxbp\.{page.stem}\.([\w.]+)"', html)}
        missing = sorted(set(getattr(module, "__all__", ())) - rendered)
        assert not missing, f"docs/api/{page.name} does not show jaxbp.{page.stem}.{missing}"


@pytest.mark.parametrize("page", PAGES)
def test_page_code_runs(page, tmp_path, monkeypatch):
    text = (DOCS / page).read_text()
    blocks = python_blocks(text, page)
    if not blocks:
        return
    missing = [name for match in REQUIRES.findall(text) for name in match.split() if not importlib.util.find_spec(name)]
    if missing:
        pytest.skip(f"{page} needs {', '.join(missing)} (pip install -e '.[interop]')")
    monkeypatch.chdir(tmp_path)  # anything an example writes lands in a scratch folder
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # a real module, so that classes defined on a page (dataclasses, equinox modules) find it
    module = types.ModuleType("__docs_page__")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    x64 = jax.config.jax_enable_x64
    try:
        for line, code in blocks:
            # pad with newlines so a traceback names the line of the .md file
            exec(compile("\n" * (line - 1) + code, str(DOCS / page), "exec"), module.__dict__)
    finally:
        jax.config.update("jax_enable_x64", x64)  # a page that flips the flag does not leak it


def test_fence_rules_reject_an_unmarked_block():
    with pytest.raises(AssertionError, match="title="):
        python_blocks("```py\nx = 1\n```\n", "page.md")
    assert python_blocks(f"```{FRAGMENT}\nx = 1\n```\n```python\ny = 2\n```\n", "page.md") == [(5, "y = 2")]


def test_readme_study_section_is_the_default_reports_findings():
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "study_readme.py"), "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_performance_page_is_generated_from_its_json():
    page = (DOCS / "performance.md").read_text()
    source = re.search(r"python tools/performance_page\.py (\S+)`", page)
    assert source, "docs/performance.md does not name the JSON it was generated from"
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "performance_page.py"), source.group(1), "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
