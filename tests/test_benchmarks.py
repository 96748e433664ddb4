"""The benchmark suite (benchmarks/, outside the package) on tiny sizes: its measuring primitives, sections, suite and CLI.

Timing is never asserted: only structure, bookkeeping and the figures that do not depend
on the machine's speed (bytes, FLOP counts, gradients).
"""

from __future__ import annotations

import importlib.machinery
import json
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import _heap as heap
from benchmarks import _machine as machine
from benchmarks import _memory as memory
from benchmarks import _results as results
from benchmarks import _step as step
from benchmarks import _tables as tables
from benchmarks import _timing as timing
from benchmarks import _torch as torch_columns
from benchmarks import gradients, mlp, remat, scaling, suite, transformer
from jaxbp import diagnostics

# ------------------------------------------------------------------------- primitives


def test_time_variants_runs_round_robin_with_rotating_start_and_excludes_warmup():
    calls: list[str] = []
    variants = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    timings = timing.time_variants(variants, repeats=3, warmup=2)
    assert calls[:6] == ["a", "a", "b", "b", "c", "c"]  # warm-up first, untimed
    assert calls[6:] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    for measured in timings.values():
        assert measured.repeats == 3 and 0 <= measured.min_ms <= measured.median_ms


def test_paired_ratio_pairs_rounds_and_brackets_the_median():
    # the machine slows down 10x over the rounds; b always takes twice a's time in the same round
    a = timing.Timing(0, 0, 20, tuple(float(10**r) for r in np.linspace(0, 1, 20)))
    b = timing.Timing(0, 0, 20, tuple(2 * t for t in a.samples_ms))
    assert timing.paired_ratio(a, b) == {"median": 0.5, "low": 0.5, "high": 0.5}
    noisy = timing.Timing(0, 0, 20, tuple(float(t) for t in range(1, 21)))
    ones = timing.Timing(0, 0, 20, (1.0,) * 20)
    paired = timing.paired_ratio(noisy, ones)
    # n = 20: k = floor((20 - 1.96 sqrt(20)) / 2) = 5, so the 6th smallest and 6th largest ratios
    assert (paired["low"], paired["median"], paired["high"]) == (6.0, 10.5, 15.0)
    with pytest.raises(ValueError, match="paired_ratio"):
        timing.paired_ratio(ones, timing.Timing(0, 0, 3, (1.0, 1.0, 1.0)))


def test_torch_is_timed_in_blocks_of_its_own_never_inside_a_jax_round():
    calls: list[str] = []
    variants = {name: (lambda name=name: calls.append(name)) for name in "ab"}
    timings = timing.time_beside_torch(variants, lambda: calls.append("torch"), repeats=3, blocks=1)
    assert set(timings) == {"a", "b", "torch"} and timings["torch"].repeats == 3
    assert calls == ["a", "b"] + ["a", "b", "b", "a", "a", "b"] + ["torch"] * 4  # warm-ups, rounds, then torch alone
    calls.clear()
    timings = timing.time_beside_torch(variants, lambda: calls.append("torch"), repeats=4, blocks=2)
    # two pairs of blocks, each warmed up: [a b | a b, b a] [torch | torch, torch], twice
    jax_block, torch_block = ["a", "b", "a", "b", "b", "a"], ["torch"] * 3
    assert calls == (jax_block + torch_block) * 2
    assert [timings[name].repeats for name in ("a", "b", "torch")] == [4, 4, 4]
    assert set(timing.time_beside_torch(variants, None, repeats=1)) == {"a", "b"}


def test_blockwise_ratio_pairs_the_medians_of_each_block():
    manual = timing.Timing(0, 0, 6, (1.0, 1.0, 3.0, 3.0, 2.0, 2.0))
    torch = timing.Timing(0, 0, 6, (2.0, 2.0, 2.0, 2.0, 1.0, 1.0))
    assert timing.blockwise_ratio(manual, torch, blocks=3) == {"median": 1.5, "low": 0.5, "high": 2.0}
    with pytest.raises(ValueError, match="blockwise_ratio"):
        timing.blockwise_ratio(manual, timing.Timing(0, 0, 4, (1.0,) * 4), blocks=3)


def test_time_variants_rejects_zero_repeats():
    with pytest.raises(ValueError, match="repeats"):
        timing.time_variants({"a": lambda: None}, repeats=0)


def test_residual_bytes_separates_arguments_from_intermediates():
    x = jnp.ones((8, 16), jnp.float32)
    # x * x saves x itself (an argument); sin saves cos(x) (an intermediate of the forward)
    assert diagnostics.residual_bytes(lambda x: jnp.sum(x * x), x) == {
        "total": 512,
        "arguments": 512,
        "intermediates": 0,
    }
    assert diagnostics.residual_bytes(lambda x: jnp.sum(jnp.sin(x)), x) == {
        "total": 512,
        "arguments": 0,
        "intermediates": 512,
    }


def test_compiled_memory_reports_argument_and_output_bytes():
    analysis = memory.compiled_memory(lambda a, b: a @ b, jnp.ones((4, 8)), jnp.ones((8, 2)))
    if analysis["argument"] is None:
        pytest.skip("this backend reports no memory analysis")
    assert analysis["argument"] == (32 + 16) * 4 and analysis["output"] == 8 * 4 and analysis["temp"] >= 0


def test_compare_training_step_row_and_ratios():
    loss, params, x, labels = mlp.mlp_problem((3, 5, 2), batch=4)
    torch_calls = []
    row = step.compare_training_step(loss, params, x, labels, repeats=2, torch_step=lambda: torch_calls.append(1))
    assert set(row["step_ms"]) == {"manual", "autodiff", "forward", "fwd_bwd", "torch"}
    # 2 rounds asked for, cut into TORCH_BLOCKS blocks of at least 1 round, each with a warm-up
    assert len(torch_calls) == 2 * timing.TORCH_BLOCKS and row["step_ms"]["torch"]["repeats"] == timing.TORCH_BLOCKS
    median = {name: t["median_ms"] for name, t in row["step_ms"].items()}
    assert row["manual_over_autodiff"] == pytest.approx(median["manual"] / median["autodiff"])
    assert row["manual_over_torch"] == pytest.approx(median["manual"] / median["torch"])
    blocks = row["manual_over_torch_blocks"]
    assert blocks["low"] <= blocks["median"] <= blocks["high"]
    assert row["grad_relative_error"] < 1e-5
    for side in ("manual", "autodiff"):
        assert row["residual_bytes"][side]["total"] > row["residual_bytes"][side]["intermediates"] > 0


def test_compare_training_step_refuses_to_time_different_gradients():
    @jax.custom_vjp
    def wrong_square(x):
        return x * x

    wrong_square.defvjp(lambda x: (x * x, x), lambda x, dy: (3.0 * x * dy,))  # d(x^2)/dx is 2x, not 3x

    with pytest.raises(ValueError, match="gradients differ"):
        step.compare_training_step(
            lambda p, x: jnp.sum(wrong_square(p * x)), jnp.ones(3), jnp.arange(1.0, 4.0), repeats=1
        )


def test_write_json_never_overwrites(tmp_path):
    first = results.write_json({"value": timing.Timing(1.0, 2.0, 3)}, "demo", directory=tmp_path)
    second = results.write_json({"value": np.float32(0.5)}, "demo", directory=tmp_path)
    assert (first.name, second.name) == ("demo-001.json", "demo-002.json")
    document = json.loads(first.read_text())
    assert document["value"] == {"min_ms": 1.0, "median_ms": 2.0, "repeats": 3, "samples_ms": []}
    for key in ("cpu", "threads", "backend", "device", "jax", "jaxlib", "torch", "time_utc"):
        assert key in document["machine"]
    assert json.loads(second.read_text())["value"] == 0.5
    with pytest.raises(FileExistsError, match="never overwritten"):
        results.write_json({}, "demo", path=first)
    assert results.new_path("demo", ".png", tmp_path).name == "demo-003.png"


def test_format_table_marks_missing_values_and_skips_nested_columns():
    table = tables.format_table([{"name": "a", "x": 1.23456, "y": None, "nested": {"k": 1}}])
    header, line = table.splitlines()
    assert header.split() == ["name", "x", "y"] and line.split() == ["a", "1.23", "n/a"]


def test_optional_torch_skips_cleanly_when_absent(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    assert torch_columns.optional_torch() is None
    assert torch_columns.TORCH_SKIP_MESSAGE in capsys.readouterr().err
    assert machine.machine_info()["torch"] is None


# --------------------------------------------------------------------------- sections


def test_mlp_step_flops_counted_by_hand():
    # widths 2-3-4, batch 5: forward 2*5*(6+12) = 180, weight grads 180, input grad of layer 2 only 2*5*12 = 120
    assert mlp.step_flops((2, 3, 4), 5) == 480


def test_torch_mlp_step_matches_the_jax_loss():
    torch = pytest.importorskip("torch")
    loss, params, x, labels = mlp.mlp_problem((6, 5, 3), batch=4)
    step = mlp.torch_mlp_step(torch, params, x, labels)
    assert float(step().detach()) == pytest.approx(float(loss(params, x, labels)), rel=1e-5)  # loss before the update


def test_torch_transformer_step_matches_the_jax_loss_and_update():
    torch = pytest.importorskip("torch")
    loss, params, ids, next_ids = transformer.transformer_problem(**transformer.TINY_SHAPES)
    heads = transformer.TINY_SHAPES["heads"]
    step = transformer.torch_transformer_step(torch, params, ids, next_ids, heads, learning_rate=0.5)
    assert float(step().detach()) == pytest.approx(float(loss(params, ids, next_ids)), rel=1e-5)
    # the loss after one update matches only if every parameter's gradient does
    updated, _ = step.sgd_step(loss, learning_rate=0.5)(params, ids, next_ids)
    assert float(step().detach()) == pytest.approx(float(loss(updated, ids, next_ids)), rel=1e-4)


def test_central_differences_match_an_analytic_gradient():
    theta = jnp.array([1.0, -2.0, 0.5])
    numerical = gradients.central_difference_gradient(lambda t: jnp.sum(t**2) + t[0] * t[1], theta)
    np.testing.assert_allclose(numerical, [2 * 1.0 - 2.0, 2 * -2.0 + 1.0, 1.0], rtol=1e-3)
    partial = gradients.central_difference_gradient(lambda t: jnp.sum(t**2), theta, coordinates=2)
    np.testing.assert_allclose(partial, [2.0, -4.0], rtol=1e-3)


def test_fitted_slope_of_a_power_law():
    assert gradients.fitted_slope([10, 100, 1000], [3.0, 300.0, 30000.0]) == pytest.approx(2.0)


def test_gradients_section_tiny():
    result = gradients.run(tiny=True, repeats=1)
    assert [row["params"] for row in result["rows"]] == [
        21 * gradients.hidden_width(n) + 4 for n in gradients.TINY_PARAM_COUNTS
    ]
    assert all(row["relative_error"] < 1e-2 for row in result["rows"])  # float32 central differences
    assert np.isfinite([result["slope_backprop"], result["slope_numerical"]]).all()


def test_scaling_section_tiny():
    result = scaling.run(tiny=True, repeats=1)
    assert [(row["sweep"], row["batch"], row["depth"]) for row in result["rows"]] == [
        ("batch", 2, 1),
        ("batch", 4, 1),
        ("depth", 2, 1),
        ("depth", 2, 2),
    ]
    assert set(result["slopes"]) == {"batch_manual", "batch_autodiff", "depth_manual", "depth_autodiff"}


def test_remat_section_saves_residuals_with_identical_gradients():
    rows = remat.measure(depth=4, width=8, batch=16, segments=[2], repeats=1)["rows"]
    base, segmented = rows
    assert not base["remat"] and segmented["segment"] == 2
    # 4 tanh layers in 2 segments: 2 hidden activations (16 x 8 float32) are no longer kept
    assert base["residual_bytes"] - segmented["residual_bytes"] >= 2 * 16 * 8 * 4
    assert segmented["max_rel_grad_diff"] < 1e-6


def test_transformer_section_tiny():
    (row,) = transformer.run(tiny=True, repeats=1)["rows"]
    assert row["model"] == "transformer-b2-t12-d8x1"
    assert row["grad_relative_error"] < 1e-4  # the blocked attention backward vs autodiff of the plain softmax
    assert row["residual_bytes"]["manual"]["total"] < row["residual_bytes"]["autodiff"]["total"]


# ------------------------------------------------------------------------------ suite


def test_suite_tiny_writes_json_and_png(tmp_path, capsys):
    code = suite.main(["--tiny", "--repeats", "1", "--sections", "mlp", "remat", "--out-dir", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    assert "manual/autodiff" in out and "targets:" in out
    document = json.loads((tmp_path / "suite-001.json").read_text())
    assert set(document["sections"]) == {"mlp", "remat"} and document["machine"]["backend"] == jax.default_backend()
    assert any("manual/autodiff" in check["target"] for check in document["targets"])
    (row,) = document["sections"]["mlp"]["rows"]
    assert row["model"] == "mlp-16-32-32-10-b8" and row["step_flops"] == mlp.step_flops(mlp.TINY_WIDTHS, mlp.TINY_BATCH)
    assert row["step_over_matmul_flop_s"] == pytest.approx(row["step_gflop_s"] / row["matmul_gflop_s"])
    assert row["grad_relative_error"] < 1e-5
    assert (tmp_path / "suite-001.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_suite_reports_a_failing_section_and_runs_the_others(monkeypatch):
    def boom(tiny: bool, repeats: int) -> dict:
        raise RuntimeError("section exploded")

    module = types.ModuleType("benchmarks.boom")
    module.__spec__ = importlib.machinery.ModuleSpec("benchmarks.boom", None)
    module.run = boom
    monkeypatch.setitem(sys.modules, "benchmarks.boom", module)
    outcome = suite.run_sections(["boom", "scaling"], tiny=True, repeats=1)
    assert outcome["boom"]["error"] == "RuntimeError: section exploded"
    assert outcome["scaling"]["rows"] and "error" not in outcome["scaling"]
    assert "ERROR RuntimeError" in suite.report(outcome, machine.machine_info())


def test_targets_flag_a_slow_lstm_and_larger_residuals():
    row = {
        "model": "lstm-b32",
        "step_ms": {},
        "manual_over_autodiff": 0.95,
        "fwd_bwd_over_fwd": 2.0,
        "residual_bytes": {"manual": {"total": 10}, "autodiff": {"total": 9}},
        "manual_over_torch": 0.5,
    }
    checks = {c["target"]: c["met"] for c in suite.check_targets({"recurrent": {"rows": [row]}})}
    assert checks == {
        "lstm-b32: manual/autodiff step <= 0.90": False,  # the LSTM's target is stricter than 1.00
        "lstm-b32: residual bytes manual <= autodiff": False,
        "lstm-b32: jaxbp faster than PyTorch eager": True,
    }


def test_time_targets_use_the_paired_and_blockwise_statistics():
    row = {
        "model": "resnet",
        "step_ms": {},
        "manual_over_autodiff": 1.05,  # a ratio of medians; the paired median below decides
        "manual_over_autodiff_paired": {"median": 0.99, "low": 0.97, "high": 1.02},
        "fwd_bwd_over_fwd": 2.0,
        "residual_bytes": {"manual": {"total": 1}, "autodiff": {"total": 2}},
        "manual_over_torch": 0.9,
        "manual_over_torch_blocks": {"median": 1.1, "low": 1.04, "high": 1.3},
    }
    step_check, _, torch = suite.check_targets({"conv": {"rows": [row]}})
    assert (step_check["met"], step_check["value"], step_check["interval"]) == (True, 0.99, [0.97, 1.02, 1.0])
    assert (torch["met"], torch["value"]) == (False, 1.1)
    assert suite._measured(step_check) == "measured 0.99 [0.97, 1.02], within noise of the limit"
    assert suite._measured(torch) == "measured 1.1 [1.04, 1.3]"


def test_python_dash_m_benchmarks_runs_the_suite(tmp_path):
    import subprocess
    from pathlib import Path

    command = [sys.executable, "-m", "benchmarks", "--tiny", "--repeats", "1", "--sections", "scaling"]
    command += ["--out-dir", str(tmp_path), "--no-plot"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=Path(__file__).parents[1], timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "suite-001.json").exists() and "wrote" in done.stdout


def test_remat_section_takes_its_sizes_on_the_command_line(tmp_path):
    out = tmp_path / "remat.json"
    argv = ["--repeats", "1", "--depth", "2", "--width", "4", "--batch", "2", "--segments", "1", "--out", str(out)]
    assert remat.main(argv) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [row["segment"] for row in rows] == [0, 1] and json.loads(out.read_text())["config"]["depth"] == 2


def test_min_seconds_raises_the_rounds_of_a_fast_variant():
    calls = []
    timings = timing.time_variants({"fast": lambda: calls.append(1)}, repeats=2, min_seconds=0.01)
    # one warm-up, one probe round, then as many rounds as fill 10 ms: far more than 2 for a no-op
    assert timings["fast"].repeats > 2 and len(calls) == timings["fast"].repeats + 2
    assert timing.time_variants({"fast": lambda: None}, repeats=2)["fast"].repeats == 2
    with pytest.raises(ValueError, match="min_seconds"):
        timing.time_variants({"fast": lambda: None}, min_seconds=-1.0)


def test_heap_allocations_sets_the_threshold_on_glibc_and_machine_info_reports_it():
    import platform

    threshold = heap.heap_allocations()
    if platform.libc_ver()[0] != "glibc":
        assert threshold is None
        return
    assert threshold == 2**30 and heap.heap_allocations() == threshold  # idempotent
    assert machine.machine_info()["malloc_heap_threshold_bytes"] == threshold
