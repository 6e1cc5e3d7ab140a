r"""Hard electron interactions: Møller delta rays and bremsstrahlung photons (class-II condensed history).

The continuous slowing-down walk of :mod:`core.dosimetry.electrons` loses energy at the *restricted*
stopping power and produces, as discrete events, the collisions that hand a large energy to a
secondary particle. This gives energy-loss straggling from the collisions that dominate it and
bremsstrahlung photons that carry energy far beyond the electron range (the far tail of 90Y voxel
S-values). Below the thresholds the losses stay continuous and local.

Møller scattering
-----------------
Electron-electron scattering with energy transfer :math:`W = \varepsilon T` to the secondary (the
less energetic of the two outgoing electrons, :math:`\varepsilon \le 1/2`), per target electron [1]_,

.. math::

    \frac{d\sigma}{d\varepsilon} = \frac{2\pi r_e^2 mc^2}{\beta^2 T}
    \Big[\frac{1}{\varepsilon^2} + \frac{1}{(1-\varepsilon)^2} + \Big(\frac{\tau}{\tau+1}\Big)^2
    - \frac{2\tau+1}{(\tau+1)^2}\frac{1}{\varepsilon(1-\varepsilon)}\Big],\qquad \tau = T/mc^2 .

Above the threshold :math:`\Delta` (``DELTA_MEV``) the number of collisions per unit mass path
:math:`\Sigma_M(T)` and the energy they take, :math:`H_M(T)`, are the closed-form integrals of this
expression from :math:`\eta = \Delta/T` to 1/2 (:func:`moller_hard`). The restricted collision
stopping power is :math:`L_\Delta = S_{col} - H_M` with :math:`S_{col}` the Bethe value of
:func:`core.dosimetry.electrons.collision_stopping_power`, so that the mean loss is unchanged.
Transfers are drawn by rejection from :math:`1/\varepsilon^2`; the directions follow from
two-body kinematics, :math:`\cos\theta = \sqrt{W (T + 2mc^2) / (T (W + 2mc^2))}` for the secondary
and the same with :math:`T - W` for the primary, on opposite sides.

Bremsstrahlung
--------------
The radiative stopping power is the Bethe-Heitler result in the form of Attix [2]_ (ch. 8),
:math:`S_{rad}/\rho = \alpha r_e^2 N_A \sum_i w_i Z_i (Z_i+1)/A_i\,(T + mc^2)\,B_r`, with
:math:`B_r = 16/3` for :math:`T \ll mc^2` and :math:`4\ln(2(T+mc^2)/mc^2) - 4/3` for
:math:`mc^2 \ll T` without screening (Heitler 1954 [3]_), taking the larger of the two (this work;
water: 0.0128 MeV cm²/g at 1 MeV, ESTAR 0.0129). The photon spectrum is taken flat in
:math:`k\,d\sigma/dk` (the thin-target Kramers shape, this work), so that photons above
:math:`k_c` (``PHOTON_CUTOFF_MEV``) are emitted at :math:`\Sigma_B = (S_{rad}/T)\ln(T/k_c)` per
unit mass path with :math:`k = k_c (T/k_c)^u`, and the soft part :math:`S_{rad} k_c/T` stays in the
continuous loss. The photon direction is the electron's turned by a polar angle drawn isotropic in the
electron's rest frame and boosted along its velocity, :math:`\cos\theta = (\cos\theta' + \beta) /
(1 + \beta\cos\theta')` with :math:`\cos\theta'` uniform (this work: forward peaked at high
energy within about :math:`1/\gamma`, nearly isotropic at low energy).

An electron that stops in place (range rejection) still radiates: it emits one photon with
probability :math:`N_B(T) = \int_{k_c}^{T} \Sigma_B / L\,dT'` (expected number of photons above
:math:`k_c` on the rest of its track, below 2 % for 90Y) with an energy drawn from the same
spectrum at :math:`T` (this work).

References
----------
.. [1] Møller C. Zur Theorie des Durchgangs schneller Elektronen durch Materie. Ann Phys 1932;406:531-585;
   the form used here is that of ICRU Report 37 (1984), section 2.
.. [2] Attix FH. Introduction to radiological physics and radiation dosimetry. Wiley; 1986.
.. [3] Heitler W. The quantum theory of radiation, 3rd ed. Oxford: Clarendon Press; 1954.

Examples
--------
>>> sigma, hard = moller_hard(1.0, 0.03)
>>> bool(sigma > 0 and 0 < hard < 1.0)
True
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["DELTA_MEV", "PHOTON_CUTOFF_MEV", "moller_hard", "radiative_b", "sample_moller_fraction",
           "moller_cosines", "sample_brems_energy", "sample_brems_cosine"]

_MC2 = 0.51099895000          # electron rest energy, MeV (CODATA 2018)
_RE = 2.8179403262e-13        # classical electron radius, cm (CODATA 2018)

#: Energy transfer (MeV) above which Møller collisions make a delta ray (this work: 30 keV electrons
#: have a CSDA range of 0.002 g/cm², far below a voxel, so lower thresholds change no dose).
DELTA_MEV = 0.03
#: Bremsstrahlung photons above this energy (MeV) are produced (this work; the photon transport
#: deposits photons below 5 keV in place).
PHOTON_CUTOFF_MEV = 0.01


def moller_hard(energy_mev, delta_mev: float = DELTA_MEV):
    """Møller collisions above ``delta_mev``: number and energy, per target electron.

    Parameters
    ----------
    energy_mev : float or ndarray
        Electron kinetic energy T, MeV.
    delta_mev : float, default=DELTA_MEV
        Threshold Δ on the energy transfer, MeV.

    Returns
    -------
    sigma_cm2 : ndarray
        Cross section :math:`\\int_\\Delta^{T/2} d\\sigma` per electron, cm² (0 where T <= 2Δ).
    hard_mev_cm2 : ndarray
        Stopping cross section :math:`\\int_\\Delta^{T/2} W d\\sigma`, MeV cm² per electron.

    Examples
    --------
    >>> s, h = moller_hard([0.05, 2.0])
    >>> float(s[0]), bool(h[1] > 0)
    (0.0, True)
    """
    t = np.atleast_1d(np.asarray(energy_mev, float))
    tau = t / _MC2
    beta2 = tau * (tau + 2) / (tau + 1) ** 2
    k = 2 * math.pi * _RE ** 2 * _MC2 / beta2
    ok = t > 2 * delta_mev
    eta = np.where(ok, delta_mev / np.where(ok, t, 1.0), 0.25)
    c1 = (tau / (tau + 1)) ** 2
    c2 = (2 * tau + 1) / (tau + 1) ** 2
    g0 = (1 / eta - 2) + (2 - 1 / (1 - eta)) + c1 * (0.5 - eta) - c2 * np.log((1 - eta) / eta)
    g1 = (np.log(1 / (2 * eta)) + (2 + math.log(0.5) - 1 / (1 - eta) - np.log(1 - eta))
          + c1 * (0.125 - eta ** 2 / 2) - c2 * np.log(2 * (1 - eta)))
    sigma = np.where(ok, k / np.where(ok, t, 1.0) * g0, 0.0)
    hard = np.where(ok, k * g1, 0.0)
    return sigma, hard


def radiative_b(energy_mev):
    """Attix's :math:`B_r(T)`: max(16/3, 4 ln(2(T + mc²)/mc²) - 4/3) (module docstring)."""
    t = np.asarray(energy_mev, float)
    return np.maximum(16.0 / 3.0, 4 * np.log(2 * (t + _MC2) / _MC2) - 4.0 / 3.0)


def sample_moller_fraction(energy_mev, generator, delta_mev: float = DELTA_MEV):
    """Draw the fraction ε = W/T of Møller collisions above Δ (torch, vectorised rejection).

    Parameters
    ----------
    energy_mev : Tensor (n,), float64
        Kinetic energies, all above 2Δ.
    generator : torch.Generator

    Returns
    -------
    Tensor (n,)
        ε in [Δ/T, 1/2].
    """
    import torch

    t = energy_mev
    tau = t / _MC2
    c1 = (tau / (tau + 1)) ** 2
    c2 = (2 * tau + 1) / (tau + 1) ** 2
    eta = torch.clamp(delta_mev / t, max=0.5)
    out = torch.empty_like(t)
    todo = torch.arange(t.numel(), device=t.device)
    while todo.numel():
        u = torch.rand(todo.numel(), generator=generator, dtype=t.dtype, device=t.device)
        e = eta[todo] / (1 - u * (1 - 2 * eta[todo]))
        q = e / (1 - e)
        accept_p = (1 + q * q + c1[todo] * e * e - c2[todo] * q) / 2.25
        keep = torch.rand(todo.numel(), generator=generator, dtype=t.dtype, device=t.device) < accept_p
        out[todo[keep]] = e[keep]
        todo = todo[~keep]
    return out


def moller_cosines(energy_mev, transfer_mev):
    """Polar-angle cosines (primary, secondary) of a Møller collision from two-body kinematics."""
    import torch

    t, w = energy_mev, transfer_mev
    rest = t - w
    cos_s = torch.sqrt(torch.clamp(w * (t + 2 * _MC2) / (t * (w + 2 * _MC2)), 0.0, 1.0))
    cos_p = torch.sqrt(torch.clamp(rest * (t + 2 * _MC2) / (t * (rest + 2 * _MC2)), 0.0, 1.0))
    return cos_p, cos_s


def sample_brems_energy(energy_mev, generator, cutoff_mev: float = PHOTON_CUTOFF_MEV):
    """Photon energies k = k_c (T/k_c)^u of the flat k dσ/dk spectrum (torch; T > k_c)."""
    import torch

    u = torch.rand(energy_mev.shape, generator=generator, dtype=energy_mev.dtype, device=energy_mev.device)
    return cutoff_mev * torch.exp(u * torch.log(energy_mev / cutoff_mev))


def sample_brems_cosine(energy_mev, generator):
    """Photon polar-angle cosines about the electron direction: boosted isotropic (module docstring)."""
    import torch

    t = energy_mev
    beta = torch.sqrt(t * (t + 2 * _MC2)) / (t + _MC2)
    c = 2 * torch.rand(t.shape, generator=generator, dtype=t.dtype, device=t.device) - 1
    return (c + beta) / (1 + beta * c)
