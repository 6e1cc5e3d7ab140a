"""Nanomedicine drug release: DCE/CEST maps, transport PDEs, inverse PINN and classical inverse.

Modules, along the data flow of a preclinical study:

* :mod:`~core.drug_release.aif`, :mod:`~core.drug_release.relaxometry`, :mod:`~core.drug_release.dce`:
  population input functions, variable-flip-angle T1 and signal-to-concentration conversion,
  voxel-wise Tofts / extended Tofts / Patlak fits (vascular permeability);
* :mod:`~core.drug_release.cest`: ratiometric CEST pH maps with their calibration;
* :mod:`~core.drug_release.release`: release-rate laws of free drug, liposomes, pH-sensitive and
  thermosensitive liposomes;
* :mod:`~core.drug_release.pressure`, :mod:`~core.drug_release.transport`: interstitial fluid
  pressure and the reaction-diffusion-advection model of encapsulated, free and bound drug;
* :mod:`~core.drug_release.outcomes`: exposure, lethal fraction, penetration from vessels;
* :mod:`~core.drug_release.inverse`, :mod:`~core.drug_release.inverse_classical`,
  :mod:`~core.drug_release.pinn`: the inverse problem, solved by least squares through the solver
  and by a physics-informed network (torch is imported only when the PINN is used);
* :mod:`~core.drug_release.piecewise`, :mod:`~core.drug_release.scenarios`,
  :mod:`~core.drug_release.microwindow`: runs in periods (heating), the scenario comparison
  (free drug, liposome, pH-triggered, thermosensitive with heating, liposome after
  radiotherapy) and the micro window reconstructed from the vessel map;
* :mod:`~core.drug_release.case`: the pipeline of a stored study, imaging to a Result.
"""

from core.drug_release.aif import estimate_bolus_arrival, mouse_aif, parker_aif, shift_aif
from core.drug_release.cest import (CestCalibration, calibrate_ph, cest_ratio, default_calibration, ph_map,
                                    ph_map_from_z, simulate_z_spectrum)
from core.drug_release.dce import curve_fit_tofts_loop, fit_patlak, fit_tofts, tofts_model
from core.drug_release.inverse import InverseProblem, InverseResult, Unknown, normalised_pattern
from core.drug_release.inverse_classical import estimate_noise_sd, fit_classical
from core.drug_release.outcomes import (DEFAULT_LETHAL_AUC_UM_H, concentration_vs_distance, distance_to_vessel_um,
                                        exposure_auc, lethal_fraction, penetration_distance_um)
from core.drug_release.pressure import FluidParams, TissueGrid, interstitial_pressure, interstitial_velocity
from core.drug_release.relaxometry import (delta_r2star_to_concentration, signal_to_concentration, spgr_signal,
                                           vfa_t1)
from core.drug_release.release import RELEASE_LAWS, ReleaseLaw, hyperthermia_temperature, release_law
from core.drug_release.scenarios import (DEFAULT_SETTINGS, SCENARIOS, ScenarioOutcome, ScenarioSettings,
                                         compare_scenarios, run_scenario, scenario_setup)
from core.drug_release.transport import PlasmaInput, TransportParams, TransportSolution, simulate

__all__ = [
    "parker_aif", "mouse_aif", "estimate_bolus_arrival", "shift_aif",
    "spgr_signal", "vfa_t1", "signal_to_concentration", "delta_r2star_to_concentration",
    "fit_tofts", "fit_patlak", "tofts_model", "curve_fit_tofts_loop",
    "simulate_z_spectrum", "cest_ratio", "CestCalibration", "calibrate_ph", "ph_map", "ph_map_from_z",
    "default_calibration",
    "ReleaseLaw", "RELEASE_LAWS", "release_law", "hyperthermia_temperature",
    "TissueGrid", "FluidParams", "interstitial_pressure", "interstitial_velocity",
    "TransportParams", "PlasmaInput", "TransportSolution", "simulate",
    "exposure_auc", "lethal_fraction", "distance_to_vessel_um", "concentration_vs_distance",
    "penetration_distance_um", "DEFAULT_LETHAL_AUC_UM_H",
    "InverseProblem", "InverseResult", "Unknown", "normalised_pattern", "fit_classical", "estimate_noise_sd",
    "SCENARIOS", "DEFAULT_SETTINGS", "ScenarioSettings", "ScenarioOutcome", "scenario_setup", "run_scenario",
    "compare_scenarios",
]
