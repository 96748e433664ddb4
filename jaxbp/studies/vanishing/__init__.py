r"""The vanishing/exploding-gradient study, measured against theory (``jaxbp vanishing``).

Every gradient comes from jaxbp's hand-written backward rules; every number is an estimate
with its standard error over independent networks, and every verdict is a Student-t test at
level 0.01 with the actual seed count (none below 8 seeds).  Sections:

1. **Gradient norm per layer vs depth** (:mod:`._gradients`): sigmoid, tanh, ReLU under naive,
   Glorot, He, orthogonal and critical initializations; measured growth rate of
   :math:`\ln\|\delta_l\|` per layer vs :math:`\tfrac12\ln\chi_1` (Schoenholz et al. 2017).
2. **Remedies and the exploding phase** at one depth (``baseline`` marks the settings without a remedy).
3. **Training and clipping** on digits (:mod:`._training`, built on :func:`jaxbp.train.loss_and_grads`
   and the optimizer registry): learning-rate sweep with and without clipping plus the
   learning-rate-matched control.
4. **Jacobian spectra** (:mod:`._spectra`): Gaussian vs orthogonal tanh along the critical line and
   ReLU + He against free probability (Pennington et al. 2017).
5. **Signal propagation and trainability**: measured :math:`q_l, c_l` vs the length and correlation
   maps; with ``--full``, a descriptive digits accuracy grid over :math:`\sigma_w^2 \times L`.
6. **Finite width** (Hanin 2018): :math:`\mathrm{Var}\ln(\|\delta_1\|/\|\delta_L\|)` vs :math:`L/N`.

Configuration in :mod:`._config` (:class:`StudyConfig`: shared :class:`Laws` and one config per
section, each section receiving only its own), statistics in :mod:`._stats`, the report in :mod:`._report`
(tables, findings, figures); :mod:`._run` runs it and holds the command line.
"""

from jaxbp.studies.vanishing._config import (
    ACTIVATIONS,
    INIT_SCHEMES,
    PRESETS,
    AcrossTimeConfig,
    FiniteWidthConfig,
    GridConfig,
    Laws,
    RemediesConfig,
    SignalConfig,
    SpectraConfig,
    StudyConfig,
    StudyConfigError,
    TrainabilityConfig,
    TrainingConfig,
)
from jaxbp.studies.vanishing._networks import NetworkSpec, build_network, resolve_init
from jaxbp.studies.vanishing._run import (
    DEFAULT_OUT,
    add_arguments,
    main,
    next_run_directory,
    prepare_output_dir,
    run,
    run_study,
)

__all__ = [
    "ACTIVATIONS",
    "DEFAULT_OUT",
    "INIT_SCHEMES",
    "PRESETS",
    "AcrossTimeConfig",
    "FiniteWidthConfig",
    "GridConfig",
    "Laws",
    "NetworkSpec",
    "RemediesConfig",
    "SignalConfig",
    "SpectraConfig",
    "StudyConfig",
    "StudyConfigError",
    "TrainabilityConfig",
    "TrainingConfig",
    "add_arguments",
    "build_network",
    "main",
    "next_run_directory",
    "prepare_output_dir",
    "resolve_init",
    "run",
    "run_study",
]
