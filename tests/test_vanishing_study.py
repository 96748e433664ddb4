"""Tests for the vanishing-gradient study (``jaxbp.studies.vanishing``).

The helpers are checked against closed forms (exponential profiles, the ReLU recursion
ln‖δ_l‖ − ln‖δ_L‖ = ½ (L − l) ln(σw²/2)) and against sampled weights; the study itself
runs end to end on the ``tiny`` preset and its outputs are validated as files.
"""

import json
import math

import jax
import numpy as np
import pytest

from jaxbp import theory
from jaxbp.studies import vanishing as V
from jaxbp.studies import vanishing_report as R

# ------------------------------------------------------------------ helpers


def test_fit_window_skips_layers_at_both_ends():
    assert V.fit_window(10, 0.1) == (2, 9)
    assert V.fit_window(50, 0.1) == (6, 45)
    assert V.fit_window(4, 0.0) == (2, 3)  # at least one layer is always skipped
    with pytest.raises(ValueError, match="fewer than 2 layers"):
        V.fit_window(3, 0.1)


def test_growth_rates_recover_exponential_profiles():
    depth = 12
    layers = np.arange(1, depth + 1)
    rates = np.array([-0.7, 0.0, 0.25])
    log_norms = 3.0 + rates[:, None] * (depth - layers)[None, :]  # ‖δ_l‖ = e^3 e^{r (L - l)}
    np.testing.assert_allclose(V.growth_rates(log_norms, (2, 11)), rates, atol=1e-12)
    noisy = log_norms.copy()
    noisy[1, 5] = -np.inf  # an underflowed norm makes that seed's rate undefined
    result = V.growth_rates(noisy, (2, 11))
    assert np.isnan(result[1]) and np.isfinite(result[[0, 2]]).all()


@pytest.mark.parametrize("sigma_w2", [0.5, 2.0, 3.0])
def test_relu_mean_field_profile_is_exact(sigma_w2):
    # For ReLU chi(q) = sigma_w2 / 2 whatever q is, so the profile is a straight line.
    depth = 7
    profile = V.mean_field_log_profile(q1=0.37, depth=depth, sigma_w2=sigma_w2, sigma_b2=0.1, activation="relu")
    expected = 0.5 * (depth - np.arange(1, depth + 1)) * math.log(sigma_w2 / 2)
    np.testing.assert_allclose(profile, expected, atol=1e-12)


def test_tanh_profile_starting_at_the_fixed_point_is_chi1_per_layer():
    sigma_w2, sigma_b2, depth = 1.76, 0.05, 9
    q_star = theory.fixed_point_q(sigma_w2, sigma_b2, "tanh")
    profile = V.mean_field_log_profile(q_star, depth, sigma_w2, sigma_b2, "tanh")
    chi1 = theory.chi1(sigma_w2, sigma_b2, "tanh")
    np.testing.assert_allclose(profile, 0.5 * (depth - np.arange(1, depth + 1)) * math.log(chi1), atol=1e-9)


@pytest.mark.parametrize("init", V.INIT_SCHEMES + ("orthogonal_critical",))
def test_resolved_sigma_w2_matches_sampled_weights(init):
    width = 256
    config = V.PRESETS["default"]
    resolved = V.resolve_init(V.NetworkSpec("tanh", init), width, config)
    w = np.asarray(resolved.dense.weights(jax.random.PRNGKey(0), (width, width)), np.float64)
    b = np.asarray(resolved.dense.bias(jax.random.PRNGKey(1), (4096,)), np.float64)
    assert width * np.mean(w**2) == pytest.approx(resolved.sigma_w2, rel=0.02)
    assert np.mean(b**2) == pytest.approx(resolved.sigma_b2, rel=0.1, abs=1e-12)
    if init == "critical":
        assert resolved.sigma_w2 == pytest.approx(1.76, abs=0.01)  # Schoenholz et al. 2017, tanh at sigma_b2 = 0.05


def test_config_and_spec_validation():
    with pytest.raises(ValueError, match="depths"):
        V.StudyConfig(depths=(3,))
    with pytest.raises(ValueError, match="inits"):
        V.StudyConfig(inits=("lecun",))
    with pytest.raises(ValueError, match="mean_field.*sigma_w2"):
        V.NetworkSpec("tanh", "mean_field")


def test_output_dir_is_never_silently_overwritten(tmp_path):
    out = V.prepare_output_dir(tmp_path / "run")
    assert out.is_dir()
    (out / "report.md").write_text("old")
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="--overwrite"):
        V.prepare_output_dir(out)
    V.prepare_output_dir(out, overwrite=True)
    assert not (out / "report.md").exists(), "the study's own files are replaced"
    assert (out / "notes.txt").read_text() == "mine", "other files are left alone"


def test_cli_refuses_an_existing_output_directory(tmp_path, capsys):
    (tmp_path / "results.json").write_text("{}")
    assert V.main(["--tiny", "--out", str(tmp_path)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "results.json").read_text() == "{}"


def test_cli_reports_a_bad_configuration_without_running(tmp_path, capsys):
    assert V.main(["--tiny", "--depths", "3", "--out", str(tmp_path / "run")]) == 2
    assert "depths must be" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_slope_table_formats_a_row_and_marks_critical_settings():
    row = dict(
        activation="relu", init="glorot", depth=20, sigma_w2=1.0, sigma_b2=0.0, chi1=0.5, predicted_rate=-0.5,
        layerwise_predicted_rate=-0.5, measured_rate=-0.55, measured_rate_std=0.02,
    )
    critical = dict(row, init="he", sigma_w2=2.0, chi1=1.0, predicted_rate=0.0, layerwise_predicted_rate=0.0, measured_rate=-0.004)
    table = R.slope_table_markdown({"grid": [row, critical]})
    lines = table.strip().splitlines()
    assert len(lines) == 4
    assert "| relu | glorot | 20 | 1 | 0 | 0.5 | -0.500 | -0.500 | -0.550 ± 0.020 | -0.050 | -10.0% |" == lines[2]
    assert lines[3].endswith("| critical |")


# ------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("vanishing") / "tiny"
    messages: list[str] = []
    config = V.PRESETS["tiny"]
    results = V.run_study(config, out, progress=messages.append)
    return config, out, results, messages


def test_tiny_study_writes_every_output(tiny_run):
    config, out, _, messages = tiny_run
    assert sorted(p.name for p in out.iterdir()) == sorted(V.OUTPUT_FILES)
    for name in V.OUTPUT_FILES:
        if name.endswith(".png"):
            assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert (out / name).stat().st_size > 10_000
    grid_size = len(config.depths) * len(config.activations) * len(config.inits)
    assert sum("grid" in m for m in messages) == grid_size
    assert messages[-1].endswith(f"wrote {len(V.OUTPUT_FILES)} files to {out}")


def test_tiny_study_json_is_strict_and_complete(tiny_run):
    config, out, _, _ = tiny_run

    def reject(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    results = json.loads((out / "results.json").read_text(), parse_constant=reject)
    assert results["config"]["depths"] == list(config.depths)
    assert len(results["grid"]) == len(config.depths) * len(config.activations) * len(config.inits)
    for r in results["grid"]:
        assert np.shape(r["delta_norm"]) == (config.seeds, r["depth"])
        assert np.shape(r["weight_grad_norm"]) == (config.seeds, r["depth"])
        assert len(r["predicted_delta_norm"]) == r["depth"]
        assert r["predicted_rate"] == pytest.approx(0.5 * math.log(r["chi1"]))
    by_setting = {(r["activation"], r["init"], r["depth"]): r for r in results["grid"]}
    deepest = max(config.depths)
    # closed forms: ReLU chi1 = sigma_w2 / 2, so He is critical and Glorot loses ½ ln 2 per layer
    assert by_setting[("relu", "he", deepest)]["predicted_rate"] == pytest.approx(0.0, abs=1e-12)
    assert by_setting[("relu", "glorot", deepest)]["predicted_rate"] == pytest.approx(-0.5 * math.log(2))
    # naive N(0, 0.01^2) weights vanish by orders of magnitude per layer, even at width 16
    assert by_setting[("sigmoid", "naive", deepest)]["measured_rate"] < -3.0
    assert abs(by_setting[("relu", "he", deepest)]["measured_rate"]) < 0.5
    assert {r["label"] for r in results["remedies"]} >= {"ReLU + He", "sigmoid + Glorot + batch norm", "sigmoid + Glorot + residual"}
    assert results["exploding_profile"]["chi1"] > 1
    for r in results["training"] + results["clipping"]:
        assert np.shape(r["test_accuracy"]) == (config.train_seeds, config.train_epochs)
    assert {r["clip_norm"] for r in results["clipping"]} == {None, config.clip_norm}
    assert results["timing"]["total_s"] > 0


def test_tiny_study_report_contains_the_generated_table(tiny_run):
    _, out, results, _ = tiny_run
    report = (out / "report.md").read_text()
    table = R.slope_table_markdown(results)
    assert table in report
    assert (out / "slope_table.md").read_text() == table
    for name in V.OUTPUT_FILES:
        if name.endswith(".png"):
            assert f"]({name})" in report
    assert "## Findings" in report and "## Configuration" in report


def test_table_can_be_rendered_from_a_saved_run(tiny_run, capsys):
    config, out, results, _ = tiny_run
    deepest = max(config.depths)
    assert R.main([str(out / "results.json"), "--depths", str(deepest)]) == 0
    printed = capsys.readouterr().out
    assert printed == R.slope_table_markdown(results, depths=[deepest])
    assert printed.count("\n") == 2 + len(config.activations) * len(config.inits)


def test_default_output_is_a_new_numbered_run_directory(tmp_path):
    assert V.next_run_directory(tmp_path / "missing") == tmp_path / "missing" / "run-001"
    (tmp_path / "run-001").mkdir()
    (tmp_path / "run-007").mkdir()
    (tmp_path / "run-notes").mkdir()
    assert V.next_run_directory(tmp_path) == tmp_path / "run-008"
