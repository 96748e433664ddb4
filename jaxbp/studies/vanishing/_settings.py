"""The named settings of each section (lists of :class:`NetworkSpec`)."""

from __future__ import annotations

from jaxbp import theory
from jaxbp.studies.vanishing._config import GridConfig, Laws, RemediesConfig, SignalConfig, SpectraConfig
from jaxbp.studies.vanishing._networks import NetworkSpec


def grid_specs(grid: GridConfig) -> list[NetworkSpec]:
    """The gradient grid: every activation x init of the config (plain networks)."""
    return [NetworkSpec(a, i, label=f"{a} + {i}") for a in grid.activations for i in grid.inits]


def critical_label(laws: Laws, activation: str = "tanh") -> str:
    sigma_w2 = theory.critical_sigma_w2(laws.critical_sigma_b2, activation)
    return f"σw²={sigma_w2:.6g}, σb²={laws.critical_sigma_b2:g}"


def remedy_specs(laws: Laws) -> list[NetworkSpec]:
    """Two vanishing baselines and the remedies (run at the remedies section's depth)."""
    return [
        NetworkSpec("sigmoid", "glorot", label="sigmoid + Glorot", baseline=True),
        NetworkSpec("sigmoid", "glorot", residual=True, label="sigmoid + Glorot + residual"),
        NetworkSpec("sigmoid", "glorot", batch_norm=True, label="sigmoid + Glorot + batch norm"),
        NetworkSpec("relu", "glorot", label="ReLU + Glorot", baseline=True),
        NetworkSpec("relu", "he", label="ReLU + He"),
        NetworkSpec("tanh", "critical", label=f"tanh at criticality ({critical_label(laws)})"),
    ]


def exploding_spec(remedies: RemediesConfig, laws: Laws) -> NetworkSpec:
    r"""tanh with :math:`\sigma_w^2 = 4` (chaotic phase: :math:`\chi_1 > 1`)."""
    s, sigma_b2 = remedies.exploding_sigma_w2, laws.critical_sigma_b2
    return NetworkSpec(
        "tanh",
        "mean_field",
        sigma_w2=s,
        sigma_b2=sigma_b2,
        label=f"tanh, σw²={s:g}, σb²={sigma_b2:g}",
    )


def training_specs(laws: Laws) -> list[NetworkSpec]:
    """Deep sigmoid vs ReLU + He vs residual vs batch norm vs tanh at criticality."""
    return [
        NetworkSpec("sigmoid", "glorot", label="sigmoid + Glorot", baseline=True),
        NetworkSpec("relu", "he", label="ReLU + He"),
        NetworkSpec("sigmoid", "glorot", residual=True, label="sigmoid + Glorot + residual"),
        NetworkSpec("sigmoid", "glorot", batch_norm=True, label="sigmoid + Glorot + batch norm"),
        NetworkSpec("tanh", "critical", label=f"tanh at criticality ({critical_label(laws)})"),
    ]


def spectrum_specs(spectra: SpectraConfig) -> list[NetworkSpec]:
    """Gaussian and orthogonal tanh on the critical line at each ``q*``, and ReLU + He (both weight kinds)."""
    specs = []
    for q_star in spectra.q_stars:
        sigma_w2, sigma_b2 = theory.critical_line_point(q_star, "tanh")
        for init, kind in (
            ("mean_field", "Gaussian"),
            ("orthogonal_mean_field", "orthogonal"),
        ):
            label = f"tanh, {kind}, q*={q_star:.3g} (σw²={sigma_w2:.6g}, σb²={sigma_b2:.6g})"
            specs.append(NetworkSpec("tanh", init, sigma_w2=sigma_w2, sigma_b2=sigma_b2, label=label))
    specs.append(NetworkSpec("relu", "mean_field", sigma_w2=2.0, label="ReLU + He, Gaussian"))
    specs.append(NetworkSpec("relu", "orthogonal_mean_field", sigma_w2=2.0, label="ReLU + He, orthogonal"))
    return specs


def signal_sigma_w2s(signal: SignalConfig, laws: Laws) -> list[float]:
    """The signal-propagation weight variances, with 0.0 replaced by tanh's critical value."""
    critical = theory.critical_sigma_w2(laws.critical_sigma_b2, "tanh")
    return [critical if s == 0.0 else s for s in signal.sigma_w2s]
