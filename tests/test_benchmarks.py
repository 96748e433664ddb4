"""The benchmark scripts run on tiny sizes and write well-formed JSON (no timing asserted)."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import sys

import pytest

BENCHMARKS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def test_manual_vs_autodiff_tiny_run_writes_json_and_refuses_to_overwrite(tmp_path, capsys):
    bench = _load("manual_vs_autodiff")
    out = tmp_path / "bench.json"
    assert bench.main(["--tiny", "--repeats", "1", "--out", str(out)]) == 0
    payload = json.loads(out.read_text())
    (result,) = payload["results"]
    assert result["config"]["name"] == "tiny-tanh-2x8"
    for key in ("step_ms_manual", "step_ms_reference_autodiff", "fwd_bwd_over_fwd", "residual_bytes_manual", "temp_bytes_manual"):
        assert result[key] > 0 or key == "temp_bytes_manual"
    assert result["manual_over_autodiff"] == pytest.approx(result["step_ms_manual"] / result["step_ms_reference_autodiff"])
    assert "manual/autodiff" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        bench.main(["--tiny", "--repeats", "1", "--out", str(out)])
