r"""Population arterial plasma input function for an 18F-FDOPA bolus, with patient variability.

Shape: the three-exponential model of Feng et al. (1993), in which a bolus that
arrives at :math:`\tau` rises linearly and clears through one fast and two slow
exponentials,

.. math::

    C_P(t) = \left(A_1 (t - \tau) - A_2 - A_3\right) e^{-\lambda_1 (t - \tau)}
             + A_2 e^{-\lambda_2 (t - \tau)} + A_3 e^{-\lambda_3 (t - \tau)},
    \qquad t \ge \tau,

and :math:`C_P = 0` before :math:`\tau`. Feng's FDG values are
:math:`A_1 = 851.1225` (per min), :math:`A_2 = 21.8798`, :math:`A_3 = 20.8113`,
:math:`\lambda_1 = 4.1339`, :math:`\lambda_2 = 0.0104`, :math:`\lambda_3 = 0.1191` /min.

Scale: amplitudes here are in **SUV units**, i.e. plasma Bq/ml per injected Bq per gram of
body weight, so :math:`C_P\,[\mathrm{Bq/ml}] = C_P^{\mathrm{SUV}} \cdot A_\mathrm{inj} / (1000\,W_\mathrm{kg})`:
the curve follows the injected activity and the weight of each patient.

Adaptation to FDOPA (this work, documented choices):

* :math:`\lambda_1 = 1.5` /min and a delay :math:`\tau \approx 0.35` min: a manually
  injected bolus reaching the brain arteries some 20 s after injection and peaking
  about 40 s after arrival (Feng's :math:`\lambda_1 = 4.1` describes a sharper FDG
  bolus sampled at the wrist).
* A nearly flat slow phase (:math:`\lambda_2 = 0.008` /min) behind a distribution phase
  (:math:`\lambda_3 = 0.3` /min): the curve stands for the 18F that the brain sees,
  FDOPA plus 3-OMFD (below); plasma FDOPA falls over the first hour while 3-OMFD rises
  (Huang et al. 1991), so their sum changes little after 15 min.
* :math:`A_1 = 60` /min, :math:`A_2 = 1.4`, :math:`A_3 = 8` (SUV units): peak about 19 SUV,
  1.8 SUV at 10 min, 1.2 SUV at 30 min; scaled so that, with the rate constants of
  :mod:`core.phantoms.kinetics_fdopa` (striatum from Huang et al. 1991), the 10-30 min
  brain uptake matches clinical FDOPA images (cortex about 1.1 SUV, striatum about
  1.9 SUV, striatum-to-cortex about 1.7).

Simplification: the labelled metabolite 3-O-methyl-FDOPA (3-OMFD), which crosses the
blood-brain barrier with a distribution volume close to one and little regional
variation (Wahl et al. 1994), is not modelled as a second input with its own tissue
compartment. The single input above lumps FDOPA and 3-OMFD; the nearly uniform 3-OMFD
contribution is absorbed into the apparent rate constants of all tissues (which refer
to this input) and largely cancels in tumour-to-brain ratios. Whole blood is taken
equal to plasma (blood-to-plasma ratio 1).

Patient variability (our choice, to spread curves as inter-subject input functions do):
log-normal factors on the amplitudes (SD 15 %), :math:`\lambda_1` (15 %),
:math:`\lambda_2` (25 %) and :math:`\lambda_3` (20 %); delay uniform in 0.15-0.55 min.

References
----------
Feng D, Huang SC, Wang X. Models for computer simulation studies of input functions for
tracer kinetic modeling with positron emission tomography. Int J Biomed Comput
1993;32:95-110.
Huang SC, Yu DC, Barrio JR, et al. Kinetics and modeling of L-6-[18F]fluoro-DOPA in
human positron emission tomographic studies. J Cereb Blood Flow Metab 1991;11:898-913.
Wahl L, Chirakal R, Firnau G, Garnett ES, Nahmias C. The distribution and kinetics of
[18F]6-fluoro-3-O-methyl-L-dopa in the human brain. J Cereb Blood Flow Metab
1994;14:664-670.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from core.errors import InputError

__all__ = [
    "FengParameters",
    "FENG_FDG_1993",
    "FDOPA_POPULATION",
    "feng_input",
    "sample_fdopa_input",
    "InputFunction",
    "fdopa_input_function",
]


@dataclass(frozen=True)
class FengParameters:
    """Parameters of the Feng (1993) input model (see module docstring for the equation)."""

    a1_per_min: float
    a2: float
    a3: float
    lambda1_per_min: float
    lambda2_per_min: float
    lambda3_per_min: float
    delay_min: float

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


#: Feng et al. 1993, FDG, amplitudes in their (uCi/ml) units; for reference and tests.
FENG_FDG_1993 = FengParameters(851.1225, 21.8798, 20.8113, 4.1339, 0.0104, 0.1191, 0.0)

#: Population FDOPA parent-plasma input in SUV units (see the module docstring).
FDOPA_POPULATION = FengParameters(
    a1_per_min=60.0,
    a2=1.4,
    a3=8.0,
    lambda1_per_min=1.5,
    lambda2_per_min=0.008,
    lambda3_per_min=0.3,
    delay_min=0.35,
)


def feng_input(t_min, params: FengParameters) -> np.ndarray:
    """Evaluate the Feng input model at times ``t_min`` (minutes from injection).

    Returns the curve in the amplitudes' unit (SUV for :data:`FDOPA_POPULATION`).

    Examples
    --------
    >>> round(float(feng_input([0.0], FENG_FDG_1993)[0]), 6)    # starts at zero
    0.0
    >>> float(feng_input([0.1], FDOPA_POPULATION)[0])           # before the delay
    0.0
    """
    t = np.asarray(t_min, dtype=float)
    if not np.all(np.isfinite(t)):
        raise InputError("input function times hold NaN or infinite values")
    p = params
    s = np.maximum(t - p.delay_min, 0.0)
    c = ((p.a1_per_min * s - p.a2 - p.a3) * np.exp(-p.lambda1_per_min * s)
         + p.a2 * np.exp(-p.lambda2_per_min * s) + p.a3 * np.exp(-p.lambda3_per_min * s))
    return np.where(t >= p.delay_min, c, 0.0)


def sample_fdopa_input(rng: np.random.Generator, population: FengParameters = FDOPA_POPULATION) -> FengParameters:
    """One patient's input parameters: population values times log-normal factors."""
    amp = float(np.exp(rng.normal(0.0, 0.15)))
    return FengParameters(
        a1_per_min=population.a1_per_min * amp * float(np.exp(rng.normal(0.0, 0.15))),
        a2=population.a2 * amp,
        a3=population.a3 * amp * float(np.exp(rng.normal(0.0, 0.15))),
        lambda1_per_min=population.lambda1_per_min * float(np.exp(rng.normal(0.0, 0.15))),
        lambda2_per_min=population.lambda2_per_min * float(np.exp(rng.normal(0.0, 0.25))),
        lambda3_per_min=population.lambda3_per_min * float(np.exp(rng.normal(0.0, 0.20))),
        delay_min=float(rng.uniform(0.15, 0.55)),
    )


@dataclass(frozen=True, eq=False)
class InputFunction:
    """A sampled input function in Bq/ml (decay-corrected to injection).

    Attributes
    ----------
    time_min : ndarray of shape (n,)
    plasma_bq_per_ml : ndarray of shape (n,)
        Arterial plasma tracer concentration, the :math:`C_P` of the compartment models.
    whole_blood_bq_per_ml : ndarray of shape (n,)
        Whole-blood concentration, the :math:`C_B` of the blood-volume term.
    parameters : FengParameters
        The model parameters in SUV units.
    suv_to_bq_per_ml : float
        Injected activity (Bq) per gram of body weight.
    """

    time_min: np.ndarray
    plasma_bq_per_ml: np.ndarray
    whole_blood_bq_per_ml: np.ndarray
    parameters: FengParameters
    suv_to_bq_per_ml: float


def fdopa_input_function(params: FengParameters, time_min, injected_activity_bq: float,
                         body_weight_kg: float) -> InputFunction:
    """Sample the FDOPA input in Bq/ml for a patient's injected activity and weight.

    Examples
    --------
    >>> t = np.linspace(0.0, 30.0, 181)
    >>> f = fdopa_input_function(FDOPA_POPULATION, t, 210e6, 70.0)
    >>> bool(f.plasma_bq_per_ml.argmax() < 10), round(f.suv_to_bq_per_ml)
    (True, 3000)
    """
    if not (injected_activity_bq > 0 and body_weight_kg > 0):
        raise InputError(f"injected activity ({injected_activity_bq!r} Bq) and weight ({body_weight_kg!r} kg) must be positive")
    t = np.asarray(time_min, dtype=float)
    scale = float(injected_activity_bq) / (1000.0 * float(body_weight_kg))
    plasma = feng_input(t, params) * scale
    return InputFunction(t, plasma, plasma.copy(), params, scale)
