"""Tests for the vanishing-gradient study (``jaxbp.studies.vanishing``).

Helpers are checked against closed forms and hand computations (exponential profiles,
standard errors, an explicit Jacobian product); each section of the ``tiny`` preset runs in its
own test, then ``run_study`` runs end to end on those sections and its outputs are validated.
"""

import argparse
import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbp.studies import vanishing as V
from jaxbp.studies.vanishing import _across_time, _gradients, _report, _run, _settings, _spectra, _stats, _tables

# ------------------------------------------------------------------ statistics


def test_fit_window_skips_layers_at_both_ends():
    assert _stats.fit_window(10, 0.1) == (2, 9)
    assert _stats.fit_window(50, 0.1) == (6, 45)
    assert _stats.fit_window(4, 0.0) == (2, 3)  # at least one layer is always skipped
    with pytest.raises(ValueError, match="fewer than 2 layers"):
        _stats.fit_window(3, 0.1)


def test_growth_rates_recover_exponential_profiles():
    depth = 12
    layers = np.arange(1, depth + 1)
    rates = np.array([-0.7, 0.0, 0.25])
    log_norms = 3.0 + rates[:, None] * (depth - layers)[None, :]  # ‖δ_l‖ = e^3 e^{r (L - l)}
    np.testing.assert_allclose(_stats.growth_rates(log_norms, (2, 11)), rates, atol=1e-12)
    noisy = log_norms.copy()
    noisy[1, 5] = -np.inf  # an underflowed norm makes that seed's rate undefined
    result = _stats.growth_rates(noisy, (2, 11))
    assert np.isnan(result[1]) and np.isfinite(result[[0, 2]]).all()


def test_estimates_and_student_t_verdicts():
    e = _stats.estimate([1.0, 2.0, 3.0, 4.0, np.nan])
    assert e == {"mean": 2.5, "se": pytest.approx(math.sqrt(5 / 3) / 2), "n": 4, "df": 3}
    assert _stats.estimate([7.0])["se"] is None
    samples = np.random.default_rng(0).standard_normal(20_000) * 2.0
    v = _stats.variance_estimate(samples)
    assert v["mean"] == pytest.approx(4.0, rel=0.03)
    assert v["se"] == pytest.approx(4.0 * math.sqrt(2 / 20_000), rel=0.1)  # Gaussian: se = σ² sqrt(2/n)
    lv = _stats.log_variance_estimate(samples)
    assert lv["mean"] == pytest.approx(math.log(4.0), abs=0.03) and lv["se"] == pytest.approx(
        math.sqrt(2 / 20_000), rel=0.1
    )
    # t = 3 with 9 df: two-sided p = 0.0150 (tables), above the 1% level; with 99 df p = 0.0034
    assert _stats.assess({"mean": 0.3, "se": 0.1, "n": 10, "df": 9})["p"] == pytest.approx(0.01496, rel=1e-3)
    assert _stats.assess({"mean": 0.3, "se": 0.1, "n": 10, "df": 9})["verdict"] == "consistent"
    assert _stats.assess({"mean": 0.3, "se": 0.1, "n": 100, "df": 99})["verdict"] == "differs"
    assert _stats.assess({"mean": 5.0, "se": 0.1, "n": _stats.MIN_SEEDS - 1, "df": 6})["verdict"] == "no verdict"
    assert not _stats.significant({"mean": 1.0, "se": None, "n": 50})
    d = _stats.difference({"mean": 1.0, "se": 0.3, "n": 10, "df": 9}, {"mean": 0.5, "se": 0.4, "n": 20, "df": 19})
    welch = (0.09 + 0.16) ** 2 / (0.09**2 / 9 + 0.16**2 / 19)  # Welch-Satterthwaite
    assert d == {"mean": 0.5, "se": pytest.approx(0.5), "n": 10, "df": pytest.approx(welch)}


def test_variance_slope_is_unbiased_with_an_honest_error():
    """Cells with Var y = 2 x: the unweighted fit recovers 2 within its bootstrap s.e., and that
    s.e. matches the spread of the slope over independent repetitions."""
    rng = np.random.default_rng(3)
    x = np.array([0.2, 0.4, 0.8])
    slopes, errors = [], []
    for _ in range(60):
        cells = [rng.standard_normal(64) * math.sqrt(2 * xi) for xi in x]
        fit = _stats.variance_slope(x, cells, resamples=200)
        slopes.append(fit["mean"])
        errors.append(fit["se"])
    assert abs(np.mean(slopes) - 2.0) < 3 * np.std(slopes) / math.sqrt(len(slopes))
    assert np.median(errors) == pytest.approx(np.std(slopes), rel=0.35)


def test_slope_table_row_and_verdicts():
    row = dict(
        activation="relu", init="glorot", depth=20, sigma_w2=1.0, sigma_b2=0.0, chi1=0.5, predicted_rate=-0.5,
        layerwise_predicted_rate=-0.5, measured_rate={"mean": -0.55, "se": 0.01, "n": 32, "df": 31},
        rate_error={"mean": -0.05, "se": 0.01, "n": 32, "df": 31},
        reference_rate={"mean": -0.50, "se": 0.01, "n": 32, "df": 31},
        finite_width_offset={"mean": 0.0, "se": 0.01, "n": 32, "df": 31},
        reference_error={"mean": -0.05, "se": 0.01 * math.sqrt(2), "n": 32, "df": 62},
    )  # fmt: skip
    few = dict(row, init="he", reference_error={"mean": -0.05, "se": 0.001, "n": 4, "df": 6})
    lines = _tables.slope_table_markdown({"grid": [row, few]}).strip().splitlines()
    assert len(lines) == 4
    assert lines[2].endswith("| -0.5500 ± 0.0100 | -0.0500 ± 0.0141 | differs (p = 0.00078) |")
    assert lines[3].endswith(f"| no verdict (n = 4 < {_stats.MIN_SEEDS}) |")


# ------------------------------------------------------------------ settings and networks


@pytest.mark.parametrize("init", ["naive", "glorot", "he", "orthogonal", "critical"])
def test_stacked_parameters_have_the_resolved_variance(init):
    width, config = 64, V.PRESETS["default"]
    spec = V.NetworkSpec("tanh", init)
    resolved = V.resolve_init(spec, width, config.laws)
    network = V.build_network(spec, 4, width, width, resolved.dense)
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    params = _gradients.init_stacked(network, resolved.dense, keys, (2, width))
    reference = network.init(keys[0], (2, width))[0]
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(reference)
    weights = [leaf for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0] if path[-1].key == "w"]
    assert all(w.shape == (3, width, width) for w in weights)
    stacked = np.concatenate([np.asarray(w).ravel() for w in weights])
    assert width * np.mean(stacked**2) == pytest.approx(resolved.sigma_w2, rel=0.05)
    assert not np.allclose(weights[0][0], weights[1][0]) and not np.allclose(weights[0][0], weights[0][1])
    if init == "critical":
        assert resolved.sigma_w2 == pytest.approx(1.76, abs=0.01)  # Schoenholz et al. 2017, tanh at sigma_b2 = 0.05


def test_settings_are_marked_by_the_baseline_field_and_draw_independent_keys():
    config = V.PRESETS["default"]
    for spec in _settings.remedy_specs(config.laws) + _settings.training_specs(config.laws):
        remedied = spec.residual or spec.batch_norm or spec.init in ("he", "critical")
        assert spec.baseline == (not remedied)
    root = jax.random.PRNGKey(0)
    keys = {str(V._networks.setting_key(root, name, 50, 128)) for name in ("relu-naive", "relu-glorot", "relu-he")}
    assert len(keys) == 3


def test_the_default_runs_no_descriptive_trainability_grid_and_keeps_its_verdict_seed_counts():
    default, full = V.PRESETS["default"], V.PRESETS["full"]
    assert "trainability" not in _run.sections_of(default)
    assert _run.sections_of(full) == _run.SECTIONS
    for config in (default, full):  # every section that prints a verdict has at least MIN_SEEDS networks
        for seeds in (config.grid.seeds, config.finite_width.seeds, config.signal.seeds, config.across_time.seeds):
            assert seeds >= _stats.MIN_SEEDS
    with pytest.raises(ValueError, match="trainability"):
        V.StudyConfig(trainability=1)


def test_each_section_config_holds_only_its_own_settings_and_the_cli_overrides_reach_them():
    config = V.PRESETS["default"]
    sections = {f.name for f in dataclasses.fields(config)} - {"laws", "seed"}
    # one config per section; clipping trains with the training section's settings
    assert sections == set(_run.SECTIONS) - {"gradient_grid", "clipping"} | {"grid"}
    assert "width" in {f.name for f in dataclasses.fields(config.signal)}
    assert not {"seeds", "width"} & {f.name for f in dataclasses.fields(config.laws)}
    changed = _run.config_from_args(
        argparse.Namespace(full=False, tiny=False, depths=[6], seeds=8, width=32, epochs=2, seed=5)
    )
    assert (changed.grid.depths, changed.grid.seeds, changed.grid.width) == ((6,), 8, 32)
    assert (changed.signal.width, changed.training.epochs, changed.seed) == (32, 2, 5)
    assert changed.spectra == config.spectra and changed.laws == config.laws
    assert config.replace(grid={"seeds": 4}).grid == dataclasses.replace(config.grid, seeds=4)
    assert json.loads(json.dumps(config.to_dict()))["finite_width"]["reference_factor"] == 2


def test_config_and_spec_validation():
    with pytest.raises(ValueError, match="depths"):
        V.GridConfig(depths=(3,))
    with pytest.raises(ValueError, match="inits"):
        V.GridConfig(inits=("lecun",))
    with pytest.raises(ValueError, match="seeds"):
        V.GridConfig(seeds=1)
    with pytest.raises(ValueError, match="TrainingConfig: seeds"):
        V.TrainingConfig(seeds=1)
    with pytest.raises(ValueError, match="grid must be"):
        V.StudyConfig(grid=V.SpectraConfig())
    with pytest.raises(ValueError, match="mean_field.*sigma_w2"):
        V.NetworkSpec("tanh", "mean_field")


def test_jacobian_singular_values_match_the_explicit_product(x64):
    # J = D_L W_L^T ... D_1 W_1^T in the (in, out) layout: h_l = tanh(h_{l-1} W_l + b_l)
    spec = V.NetworkSpec("tanh", "mean_field", sigma_w2=1.5, sigma_b2=0.1)
    resolved = V.resolve_init(spec, 6, V.PRESETS["default"].laws)
    network = V.build_network(spec, 3, 6, 6, resolved.dense)
    params = network.init(jax.random.PRNGKey(1), (6,))[0]
    x = jax.random.normal(jax.random.PRNGKey(2), (6,), jnp.float64)
    record: dict = {}
    network.forward(params, x, network.init_state(params), record=record)
    weights = [leaf for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0] if path[-1].key == "w"]
    jac = np.eye(6)
    expected = []
    for layer, w in enumerate(weights, start=1):
        jac = np.diag(1 - np.tanh(np.asarray(record[f"z{layer}"])) ** 2) @ np.asarray(w).T @ jac
        expected.append(np.linalg.svd(jac, compute_uv=False))
    got = _spectra._jacobian_singular_values(network, "tanh", (1, 2, 3), params, x)
    np.testing.assert_allclose(np.asarray(got), np.array(expected), rtol=1e-10)


def test_rnn_gradients_across_time_match_an_explicit_numpy_bptt(x64):
    """The across-time norms equal ||dL/dh_t|| from BPTT written out in numpy:
    g_T = v, g_{t-1} = (g_t * (1 - h_t^2)) W_hh^T for L = <h_T, v>."""
    params = _across_time.rnn_params(jax.random.PRNGKey(0), 3, 5, sigma_w2=1.7, sigma_x2=0.5, sigma_b2=0.1)
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (2, 7, 3), jnp.float64))
    v = np.asarray(jax.random.normal(jax.random.PRNGKey(2), (2, 5), jnp.float64))
    w_ih, w_hh, b = (np.asarray(params[k]) for k in ("w_ih", "w_hh", "b"))
    hs, h = [], np.zeros((2, 5))
    for t in range(7):
        h = np.tanh(x[:, t] @ w_ih + h @ w_hh + b)
        hs.append(h)
    g, expected = v, []
    for t in reversed(range(7)):
        expected.append(np.linalg.norm(g))
        g = (g * (1 - hs[t] ** 2)) @ w_hh.T
    stacked = jax.tree_util.tree_map(lambda a: a[None], params)
    got = _across_time._norms_function("rnn")(stacked, jnp.asarray(x)[None], jnp.asarray(v)[None])[0]
    np.testing.assert_allclose(np.asarray(got), expected[::-1], rtol=1e-12)


# ------------------------------------------------------------------ output directory and CLI


def test_output_dir_is_never_silently_overwritten(tmp_path):
    out = V.prepare_output_dir(tmp_path / "run")
    (out / "report.md").write_text("old")
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="--overwrite"):
        V.prepare_output_dir(out)
    V.prepare_output_dir(out, overwrite=True)
    assert not (out / "report.md").exists(), "the study's own files are replaced"
    assert (out / "notes.txt").read_text() == "mine", "other files are left alone"


def test_cli_refuses_existing_directories_and_bad_configurations(tmp_path, capsys):
    (tmp_path / "results.json").write_text("{}")
    assert V.main(["--tiny", "--out", str(tmp_path)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "results.json").read_text() == "{}"
    assert V.main(["--tiny", "--depths", "3", "--out", str(tmp_path / "run")]) == 2
    assert "depths must be" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_default_output_is_a_new_numbered_run_directory(tmp_path):
    assert V.next_run_directory(tmp_path / "missing") == tmp_path / "missing" / "run-001"
    for name in ("run-001", "run-007", "run-notes"):
        (tmp_path / name).mkdir()
    assert V.next_run_directory(tmp_path) == tmp_path / "run-008"


# ------------------------------------------------------------------ end to end


TINY = V.PRESETS["tiny"]
_tiny_sections: dict[str, dict] = {}
_run_section = _run.run_section  # the real one (tiny_run below serves run_study from the cache)


def tiny_section(name: str) -> dict:
    """One section of the tiny study, computed once per test run."""
    if name not in _tiny_sections:
        _tiny_sections[name] = _run_section(name, TINY, jax.random.PRNGKey(TINY.seed))
    return _tiny_sections[name]


SECTION_ENTRIES = {
    "gradient_grid": {"grid"},
    "remedies": {"remedies", "exploding_profile"},
    "finite_width": {"finite_width"},
    "spectra": {"spectra"},
    "signal": {"signal"},
    "across_time": {"across_time"},
    "training": {"training"},
    "clipping": {"clipping"},
    "trainability": {"trainability"},
}


@pytest.mark.parametrize("name", _run.SECTIONS)
def test_every_tiny_section_gives_its_json_entries(name):
    """Each section on its own (so no test waits for the whole study): exactly its entries,
    serializable as strict JSON once non-finite values became null."""
    entries = tiny_section(name)
    assert set(entries) == SECTION_ENTRIES[name]
    json.dumps(_report.finite_or_none(entries), allow_nan=False)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """``run_study`` end to end on the tiny preset, its sections served from :func:`tiny_section`
    (the tests above computed them; the report, figures and timing are made here)."""
    out = tmp_path_factory.mktemp("vanishing") / "tiny"
    messages: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_run, "run_section", lambda name, config, key: tiny_section(name))
        results = V.run_study(TINY, out, progress=messages.append)
    return TINY, out, results, messages


def test_tiny_study_writes_every_output(tiny_run):
    _, out, _, messages = tiny_run
    assert sorted(p.name for p in out.iterdir()) == sorted(_report.OUTPUT_FILES)
    for name in _report.FIGURES:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert messages[-1].endswith(f"wrote {len(_report.OUTPUT_FILES)} files to {out}")


def test_tiny_study_json_is_strict_and_complete(tiny_run):
    config, out, _, _ = tiny_run

    def reject(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    results = json.loads((out / "results.json").read_text(), parse_constant=reject)
    assert len(results["grid"]) == len(config.grid.depths) * len(config.grid.activations) * len(config.grid.inits)
    for r in results["grid"]:
        assert np.shape(r["delta_norm"]) == (config.grid.seeds, r["depth"])
        assert r["predicted_rate"] == pytest.approx(0.5 * math.log(r["chi1"]))
        assert r["measured_rate"]["n"] == config.grid.seeds and r["measured_rate"]["se"] > 0
    by_setting = {(r["activation"], r["init"]): r for r in results["grid"]}
    assert by_setting[("relu", "he")]["predicted_rate"] == pytest.approx(0.0, abs=1e-12)  # ReLU chi1 = sigma_w2 / 2
    assert by_setting[("relu", "glorot")]["predicted_rate"] == pytest.approx(-0.5 * math.log(2))
    assert results["exploding_profile"]["chi1"] > 1
    for e in results["clipping"]["runs"]:
        assert 0 < e["clipped"]["clip_factor"]["mean"] <= 1
        assert e["matched_learning_rate"] == pytest.approx(e["learning_rate"] * e["clipped"]["clip_factor"]["mean"])
    for r in results["spectra"]:
        assert [d["depth"] for d in r["depths"]] == list(config.spectra.depths)
        assert np.shape(r["depths"][0]["singular_values"]) == (config.spectra.seeds, config.spectra.width)
        for d in r["depths"]:  # N non-negative values: var/mean² lies in [0, N - 1]
            s2 = np.asarray(d["singular_values"]) ** 2
            assert d["s2_relative_variance"]["mean"] == pytest.approx(np.mean(s2.var(axis=1) / s2.mean(axis=1) ** 2))
            assert (
                0
                <= d["s2_relative_variance"]["mean"]
                <= d["largest_possible_relative_variance"]
                == config.spectra.width - 1
            )
    heat = results["trainability"]
    assert np.shape(heat["test_accuracy"]) == (len(config.trainability.depths), len(config.trainability.sigma_w2s))
    assert {"rate_errors", "clipping", "isometry", "finite_width", "calibration"} <= set(results["summary"])
    for r in results["across_time"]["rnn"] + results["across_time"]["lstm"]:
        assert np.shape(r["grad_norm"]) == (config.across_time.seeds, config.across_time.steps)
    assert [r["sigma_w2"] for r in results["across_time"]["rnn"]] == list(config.across_time.rnn_sigma_w2s)
    control = results["across_time"]["rnn_width_control"]
    assert [(r["sigma_w2"], r["width"]) for r in control] == [
        (s, h) for s in config.across_time.control_sigma_w2s for h in config.across_time.control_widths
    ]
    for r in control:
        assert np.shape(r["grad_norm"]) == (config.across_time.seeds, config.across_time.steps)
        assert r["input_norm_rate_error"]["mean"] == pytest.approx(
            r["measured_rate"]["mean"] - r["input_norm_predicted_rate"]
        )
    assert results["timing"]["total_s"] > 0
    for r in results["signal"]:  # c is compared one depth scale in, where it still moves
        assert 2 <= r["transient_layer"] <= r["depth"] and r["c_transient_error"]["n"] == config.signal.seeds
    critical = [r for r in results["signal"] if abs(r["chi1"] - 1) < 1e-8]
    assert critical and all(r["xi_c"] is None for r in critical)  # infinite on the critical line (null in JSON)
    for r in results["spectra"]:  # free probability (N -> inf at fixed L) gives no verdict at large L/N
        for d in r["depths"]:
            assert (d["relative_variance_log_error"] is None) == (d["depth_over_width"] > 0.1)
    for r in results["grid"]:
        assert np.shape(r["reference_rate_per_seed"]) == (config.grid.seeds,)


def test_tiny_study_report_states_numbers_with_standard_errors(tiny_run):
    _, out, results, _ = tiny_run
    report = (out / "report.md").read_text()
    assert (out / "slope_table.md").read_text() in report
    for name in _report.FIGURES:
        assert f"]({name})" in report
    assert "```json" not in report and "∞" in report  # the configuration lives in results.json
    assert "no verdict (n = 4 < 8)" in report  # the tiny preset's 4 seeds are below the minimum
    findings = report.split("## Findings")[1].split("\n## ")[0].strip().splitlines()
    assert len(findings) >= 10
    for line in findings[1:]:  # the first states the tests
        assert "±" in line or "½ ln χ1" in line or "withdrawn" in line, line


def test_lstm_forget_bias_slows_the_decay_across_time(tiny_run):
    """A larger forget-gate bias keeps ||dL/dh_t|| up (f_t = dc_t/dc_{t-1} closer to 1); the tanh RNN
    carries its mean-field prediction."""
    config, _, results, _ = tiny_run
    effect = results["across_time"]["forget_bias_effect"]
    assert (effect["low"], effect["high"]) == (
        min(config.across_time.lstm_forget_biases),
        max(config.across_time.lstm_forget_biases),
    )
    assert effect["rate_difference"]["mean"] > 3 * effect["rate_difference"]["se"] > 0
    for rnn in results["across_time"]["rnn"]:
        assert rnn["predicted_rate"] == pytest.approx(0.5 * math.log(rnn["chi"]))
        assert rnn["measured_rate"]["n"] == config.across_time.seeds


def test_table_can_be_rendered_from_a_saved_run(tiny_run, capsys):
    config, out, results, _ = tiny_run
    assert _report.main([str(out / "results.json"), "--depths", str(max(config.grid.depths))]) == 0
    printed = capsys.readouterr().out
    assert printed.count("\n") == 2 + len(config.grid.activations) * len(config.grid.inits)


def test_a_long_section_reports_its_settings_and_is_silent_outside_a_run():
    from jaxbp.studies.vanishing import _progress

    _progress.tick("nothing listens")  # outside reporting(): no reporter, no error
    said: list[str] = []
    with _progress.reporting(said.append, "gradient_grid", every_s=0.0):
        _progress.tick("tanh-he L=50")
        _progress.tick("relu-he L=50")
    _progress.tick("after the section")
    assert said == ["  gradient_grid: 1 done, last tanh-he L=50", "  gradient_grid: 2 done, last relu-he L=50"]
    with _progress.reporting(said.append, "quiet", every_s=3600.0):
        _progress.tick("too soon to say")
    assert len(said) == 2


def test_seed_chunks_divide_the_seeds_and_fit_the_budget():
    assert _gradients.seed_chunk(64, bytes_per_seed=10, budget=1000) == 64
    assert _gradients.seed_chunk(64, bytes_per_seed=100, budget=1000) == 8  # 10 fit, 8 divides 64
    assert _gradients.seed_chunk(6, bytes_per_seed=10**9, budget=10) == 1  # one seed even over the budget


@pytest.mark.parametrize("plot", ["plot_clipping", "plot_spectra"])
def test_legends_of_the_crowded_figures_lie_outside_the_data(tiny_run, plot, monkeypatch, tmp_path):
    from jaxbp.studies.vanishing import _figures_training

    figures = []
    monkeypatch.setattr(_figures_training, "save", lambda fig, path, title, rect=None: figures.append(fig))
    getattr(_figures_training, plot)(_report.finite_or_none(tiny_run[2]), tmp_path / "figure.png")
    (fig,) = figures
    fig.canvas.draw()
    legends = [(ax, ax.get_legend()) for ax in fig.axes if ax.get_legend() is not None]
    assert legends
    for ax, legend in legends:  # the legend's box sits wholly below the axes' data area
        assert legend.get_window_extent().y1 <= ax.get_window_extent().y0


def test_input_norm_rate_reduces_to_half_log_chi_for_a_fixed_input_norm_and_moves_when_it_fluctuates():
    from jaxbp import theory

    window = _stats.fit_window(30, 0.1)
    half_log_chi = 0.5 * math.log(theory.chi1(1.0, 0.05 + 0.25, "tanh"))
    # a million features: ||x_t||^2 / F is 1 to 0.1%, one sequence: the stationary rate is ½ ln chi
    fixed = _across_time.input_norm_rate(1.0, 0.25, 0.05, 10**6, 30, 1, window, replicates=50)
    assert fixed == pytest.approx(half_log_chi, abs=2e-3)
    # one feature: u ~ chi^2_1 fluctuates strongly, so the expected rate moves off ½ ln chi
    fluctuating = _across_time.input_norm_rate(1.0, 0.25, 0.05, 1, 30, 8, window, replicates=400)
    assert abs(fluctuating - half_log_chi) > 0.01


def test_a_run_without_the_trainability_grid_says_so_and_draws_no_heatmap(tiny_run, tmp_path, monkeypatch):
    results = {k: v for k, v in _report.finite_or_none(tiny_run[2]).items() if k != "trainability"}
    monkeypatch.setattr(_report, "FIGURES", {"trainability.png": _report.FIGURES["trainability.png"]})
    _report.write_outputs(results, tmp_path)
    assert not (tmp_path / "trainability.png").exists()
    report = (tmp_path / "report.md").read_text()
    assert "trainability.png" not in report and "`--full` runs it" in report
