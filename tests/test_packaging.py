"""The sdist and the wheel: built from the source tree, the wheel installed into a fresh
venv, the CLI run from another directory.

The wheel is built from the sdist (``python -m build``), so a file the sdist forgets
breaks this test. The fresh venv gets only the wheel (``--no-deps``); its dependencies
(jax, optax, ...) come from this interpreter's site-packages through a ``.pth`` line,
which adds them to ``sys.path`` without running their ``.pth`` files, so this checkout's
editable install cannot shadow the wheel. Building needs the package index (setuptools
in an isolated build environment); without one the test is skipped.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import sysconfig
import tarfile
import venv
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
OFFLINE = ("Could not find a version", "No matching distribution", "Failed to establish", "Network is unreachable")


def run(*command: str | pathlib.Path, cwd: pathlib.Path) -> subprocess.CompletedProcess:
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}  # only what is installed
    return subprocess.run(
        [str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("dist")
    result = run(sys.executable, "-m", "build", "--outdir", out, ROOT, cwd=out)
    if result.returncode != 0 and any(marker in result.stdout + result.stderr for marker in OFFLINE):
        pytest.skip("building needs the package index (setuptools in an isolated environment)")
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def test_sdist_and_wheel_carry_the_license_and_py_typed(dist):
    (sdist,) = dist.glob("jaxbp-*.tar.gz")
    (wheel,) = dist.glob("jaxbp-*.whl")
    with tarfile.open(sdist) as archive:
        sdist_names = {pathlib.PurePosixPath(name).name for name in archive.getnames()}
    assert {"LICENSE", "py.typed", "pyproject.toml"} <= sdist_names
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(name for name in names if name.endswith(".dist-info/METADATA"))).decode()
    assert "jaxbp/py.typed" in names
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    assert "License-Expression: MIT" in metadata
    assert not any(name.startswith(("tests/", "docs/", "experiments/", "benchmarks/")) for name in names)


def test_wheel_installs_into_a_fresh_venv_and_the_cli_runs_elsewhere(dist, tmp_path):
    (wheel,) = dist.glob("jaxbp-*.whl")
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = pathlib.Path(
        run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=tmp_path).stdout.strip()
    )
    (site / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    installed = run(
        sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", wheel, cwd=tmp_path
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = run(python, "-c", "import jaxbp, pathlib; print(pathlib.Path(jaxbp.__file__).parent)", cwd=elsewhere)
    assert where.returncode == 0, where.stderr
    package = pathlib.Path(where.stdout.strip())
    assert package.parent == site and (package / "py.typed").is_file()
    cli = run(env_dir / "bin" / "jaxbp", "--help", cwd=elsewhere)  # the console script the wheel installed
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "train" in cli.stdout
