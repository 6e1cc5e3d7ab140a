r"""Release-rate laws of liposomal doxorubicin: constant, pH-triggered and heat-triggered.

Encapsulated drug :math:`C_E` becomes free drug :math:`C_F` by first-order release,

.. math::

    \frac{dC_E}{dt} = -k_{rel}\,C_E,\qquad \frac{dC_F}{dt} = +k_{rel}\,C_E + \dots,

so that at constant conditions the fraction released after a time :math:`t` is
:math:`1 - e^{-k_{rel} t}`. Rates are in **1/h** throughout this module. The laws:

``"free"``
    Free doxorubicin, not encapsulated: there is nothing to release. The law has
    ``encapsulated = False`` and its rate is ``+inf`` (instantaneous release); a transport
    solver should inject the dose straight into the free-drug compartment rather than
    integrate an infinite rate.
``"liposome"`` (PEGylated, Doxil-like, non-triggered)
    A constant slow leak, :math:`k_{rel} = 0.004` 1/h (half-time about 7 days; this work,
    chosen slow compared with the circulation half-life of about two days of PEGylated
    liposomal doxorubicin reviewed by Gabizon et al. 2003 [1]_, whose stable remote-loaded
    formulation releases little drug in the circulation).
``"ph_sensitive"``
    A Hill (sigmoid) switch between :math:`k_{min}` at neutral pH and :math:`k_{max}` in acid,

    .. math::

        k_{rel}(\mathrm{pH}) = k_{min} + \frac{k_{max} - k_{min}}{1 + 10^{\,n(\mathrm{pH} - \mathrm{pH}_{50})}},

    so :math:`k(\mathrm{pH}_{50}) = (k_{min} + k_{max})/2`. Defaults (this work):
    :math:`k_{min}` = 0.004 1/h, :math:`k_{max}` = 0.5 1/h, :math:`\mathrm{pH}_{50}` = 6.5,
    :math:`n` = 4, so that release switches on over the extracellular pH of acidic tumour
    regions (about 6.5-7.0) rather than only in endosomes.
``"thermosensitive"`` (lysolipid-containing TSL, Needham et al. 2000 [2]_)
    A logistic function of temperature,

    .. math::

        k_{rel}(T) = k_{low} + \frac{k_{high} - k_{low}}{1 + e^{-(T - T_m)/w}},

    so :math:`k(T_m) = (k_{low} + k_{high})/2`. Defaults: :math:`T_m` = 41.5 °C,
    :math:`w` = 0.5 °C, :math:`k_{low}` = 0.05 1/h and :math:`k_{high}` = 171 1/h (this work,
    chosen so that ~50 % is released in 20 s at 42 °C, as reported qualitatively in Needham et
    al. 2000 [2]_: release within tens of seconds at mild hyperthermia, 41-42 °C, and a slow
    leak at 37 °C, here 0.07 1/h). Gasselhuber et al. 2012 [3]_ use a temperature-dependent first-order
    release of this kind in a spatio-temporal model of drug delivery from such liposomes.

:func:`hyperthermia_temperature` builds the temperature field of a heated region for the
demo (this work): 37 °C far away, about 42 °C inside a radius, with a smooth logistic edge.

Inputs are validated at the boundary: pH in [4, 9], temperature in [30, 50] °C, finite.

References
----------
.. [1] Gabizon A, Shmeeda H, Barenholz Y. Pharmacokinetics of pegylated liposomal doxorubicin:
   review of animal and human studies. Clin Pharmacokinet 2003;42:419-436.
.. [2] Needham D, Anyarambhatla G, Kong G, Dewhirst MW. A new temperature-sensitive liposome for
   use with mild hyperthermia: characterization and testing in a human tumor xenograft model.
   Cancer Res 2000;60:1197-1201.
.. [3] Gasselhuber A, Dreher MR, Rattay F, Wood BJ, Haemmerich D. Comparison of conventional
   chemotherapy, stealth liposomes and temperature-sensitive liposomes in a mathematical model.
   Int J Hyperthermia 2012;28:337-348.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types

import numpy as np

from core.errors import InputError

__all__ = [
    "ReleaseLaw",
    "RELEASE_LAWS",
    "release_law",
    "constant_release",
    "ph_sensitive_release",
    "thermosensitive_release",
    "free_drug",
    "hyperthermia_temperature",
    "PH_RANGE",
    "TEMPERATURE_RANGE_C",
]

#: Accepted pH range.
PH_RANGE = (4.0, 9.0)
#: Accepted temperature range, °C.
TEMPERATURE_RANGE_C = (30.0, 50.0)

_KINDS = {"free": (), "constant": ("k_per_h",),
          "ph_hill": ("k_min_per_h", "k_max_per_h", "ph50", "hill"),
          "temperature_logistic": ("k_low_per_h", "k_high_per_h", "tm_c", "width_c")}


def _check_field(x, name: str, lo: float, hi: float, unit: str) -> np.ndarray:
    a = np.asarray(x, float)
    if a.size and not np.all(np.isfinite(a)):
        raise InputError(f"{name} contains {int(np.sum(~np.isfinite(a)))} NaN or infinite values",
                         fix=f"Give finite {name} values (mask out voxels with no {name} measurement).")
    if a.size and (a.min() < lo or a.max() > hi):
        raise InputError(f"{name} must lie in [{lo:g}, {hi:g}]{unit}, got {a.min():g} to {a.max():g}",
                         fix=f"Check the {name} map and its units.")
    return a


@dataclasses.dataclass(frozen=True)
class ReleaseLaw:
    """A first-order release law of encapsulated drug.

    Attributes
    ----------
    name : str
        Registry name.
    kind : str
        ``"free"``, ``"constant"``, ``"ph_hill"`` or ``"temperature_logistic"``.
    parameters : mapping of str to float
        Rates in 1/h, pH50, Hill coefficient, temperatures in °C (read-only).
    sources : tuple of str
        Where the form and the values come from.
    description : str
        One sentence for a page.
    """

    name: str
    kind: str
    parameters: types.MappingProxyType = dataclasses.field(default_factory=dict, hash=False)
    sources: tuple = ()
    description: str = ""

    def __post_init__(self):
        if self.kind not in _KINDS:
            raise InputError(f"unknown release-law kind {self.kind!r}", fix=f"Use one of {sorted(_KINDS)}.")
        params = {k: float(v) for k, v in dict(self.parameters).items()}
        if set(params) != set(_KINDS[self.kind]):
            raise InputError(f"release law {self.name!r} of kind {self.kind!r} needs parameters "
                             f"{list(_KINDS[self.kind])}, got {sorted(params)}", fix="Give exactly those.")
        if not all(math.isfinite(v) for v in params.values()):
            raise InputError(f"release law {self.name!r} has non-finite parameters {params}",
                             fix="Give finite values.")
        rates = [v for k, v in params.items() if k.endswith("_per_h")]
        if any(v < 0 for v in rates):
            raise InputError(f"release rates of {self.name!r} must be >= 0 1/h, got {rates}",
                             fix="Give rates in 1/h.")
        if self.kind == "ph_hill":
            if params["k_max_per_h"] < params["k_min_per_h"] or params["hill"] <= 0:
                raise InputError(f"pH law {self.name!r} needs k_max >= k_min and hill > 0, got {params}",
                                 fix="Acidic pH must release faster than neutral pH.")
            _check_field(params["ph50"], "pH50", *PH_RANGE, "")
        if self.kind == "temperature_logistic":
            if params["k_high_per_h"] < params["k_low_per_h"] or params["width_c"] <= 0:
                raise InputError(f"temperature law {self.name!r} needs k_high >= k_low and width > 0, got {params}",
                                 fix="Heat must release faster than body temperature.")
            _check_field(params["tm_c"], "Tm", *TEMPERATURE_RANGE_C, " °C")
        object.__setattr__(self, "parameters", types.MappingProxyType(params))
        object.__setattr__(self, "sources", tuple(self.sources))

    @property
    def encapsulated(self) -> bool:
        """False for free drug (nothing to release; rate is ``inf``)."""
        return self.kind != "free"

    @property
    def needs(self) -> tuple[str, ...]:
        """Inputs the rate depends on: ``()``, ``("ph",)`` or ``("temperature_c",)``."""
        return {"ph_hill": ("ph",), "temperature_logistic": ("temperature_c",)}.get(self.kind, ())

    def rate_per_h(self, ph=None, temperature_c=None) -> np.ndarray:
        """Release rate :math:`k_{rel}` (1/h), elementwise.

        Parameters
        ----------
        ph : array-like, optional
            Extracellular pH, in [4, 9]; required by pH-triggered laws.
        temperature_c : array-like, optional
            Tissue temperature, °C, in [30, 50]; required by heat-triggered laws.

        Returns
        -------
        ndarray
            Broadcast shape of the inputs given (0-d when none); ``inf`` for free drug.

        Examples
        --------
        >>> law = release_law("ph_sensitive")
        >>> float(law.rate_per_h(ph=law.parameters["ph50"])) == (0.004 + 0.5) / 2
        True
        """
        shapes = []
        if ph is not None:
            ph = _check_field(ph, "pH", *PH_RANGE, "")
            shapes.append(ph.shape)
        if temperature_c is not None:
            temperature_c = _check_field(temperature_c, "temperature", *TEMPERATURE_RANGE_C, " °C")
            shapes.append(temperature_c.shape)
        shape = np.broadcast_shapes(*shapes) if shapes else ()
        p = self.parameters
        if self.kind == "free":
            return np.full(shape, np.inf)
        if self.kind == "constant":
            return np.full(shape, p["k_per_h"])
        if self.kind == "ph_hill":
            if ph is None:
                raise InputError(f"release law {self.name!r} needs a pH", fix="Pass ph= (e.g. a CEST pH map).")
            x = np.clip(p["hill"] * (ph - p["ph50"]), -300.0, 300.0)
            k = p["k_min_per_h"] + (p["k_max_per_h"] - p["k_min_per_h"]) / (1.0 + 10.0**x)
            return np.broadcast_to(k, shape).copy()
        if temperature_c is None:
            raise InputError(f"release law {self.name!r} needs a temperature",
                             fix="Pass temperature_c= in °C (37.0 without heating).")
        x = np.clip((temperature_c - p["tm_c"]) / p["width_c"], -700.0, 700.0)
        k = p["k_low_per_h"] + (p["k_high_per_h"] - p["k_low_per_h"]) / (1.0 + np.exp(-x))
        return np.broadcast_to(k, shape).copy()

    def fraction_released(self, t_h, ph=None, temperature_c=None) -> np.ndarray:
        r"""Fraction released after ``t_h`` hours at constant conditions, :math:`1 - e^{-k t}`.

        Free drug gives 1 at every time: it was never encapsulated.

        Examples
        --------
        >>> round(float(release_law("liposome").fraction_released(24.0)), 4)
        0.0915
        """
        t = np.asarray(t_h, float)
        if not np.all(np.isfinite(t)) or np.any(t < 0):
            raise InputError("times must be finite and >= 0 h", fix="Give hours after the start of release.")
        k = self.rate_per_h(ph=ph, temperature_c=temperature_c)
        if not self.encapsulated:
            return np.ones(np.broadcast_shapes(t.shape, k.shape))
        return -np.expm1(-k * t)


# --- constructors and registry -----------------------------------------------------------------

def free_drug() -> ReleaseLaw:
    """Free (non-encapsulated) doxorubicin: rate ``inf``, ``encapsulated`` False."""
    return ReleaseLaw("free", "free", {}, ("not encapsulated: all drug is free at injection",),
                      "Free doxorubicin: no carrier, nothing to release.")


def constant_release(k_per_h: float = 0.004, *, name: str = "liposome") -> ReleaseLaw:
    """A constant release rate (non-triggered PEGylated liposome), 1/h.

    Examples
    --------
    >>> float(constant_release(0.01).rate_per_h())
    0.01
    """
    return ReleaseLaw(name, "constant", {"k_per_h": k_per_h},
                      ("this work: slow leak, half-time ~7 days, compared with the ~2-day circulation "
                       "half-life reviewed in Gabizon et al. 2003 Clin Pharmacokinet 42:419",),
                      "PEGylated (Doxil-like) liposome: slow constant leak.")


def ph_sensitive_release(k_min_per_h: float = 0.004, k_max_per_h: float = 0.5, ph50: float = 6.5,
                         hill: float = 4.0, *, name: str = "ph_sensitive") -> ReleaseLaw:
    """A pH-triggered liposome: Hill switch from ``k_min_per_h`` (neutral) to ``k_max_per_h`` (acid).

    Examples
    --------
    >>> law = ph_sensitive_release()
    >>> bool(law.rate_per_h(ph=6.0) > law.rate_per_h(ph=7.4))
    True
    """
    return ReleaseLaw(name, "ph_hill",
                      {"k_min_per_h": k_min_per_h, "k_max_per_h": k_max_per_h, "ph50": ph50, "hill": hill},
                      ("this work: Hill form and all values (acid-triggered release of pH-sensitive liposomes)",),
                      "pH-sensitive liposome: opens in acidic tumour regions.")


def thermosensitive_release(k_low_per_h: float = 0.05, k_high_per_h: float | None = None, tm_c: float = 41.5,
                            width_c: float = 0.5, *, name: str = "thermosensitive") -> ReleaseLaw:
    """A lysolipid thermosensitive liposome: logistic rate in temperature.

    ``k_high_per_h`` defaults to the value that releases 50 % in 20 s at 42 °C (this work,
    from the qualitative release within tens of seconds at 41-42 °C in Needham et al. 2000).

    Examples
    --------
    >>> law = thermosensitive_release()
    >>> round(float(law.fraction_released(20.0 / 3600.0, temperature_c=42.0)), 3)
    0.5
    """
    if k_high_per_h is None:
        k42 = math.log(2.0) / (20.0 / 3600.0)                      # 50 % in 20 s, 1/h
        s = 1.0 / (1.0 + math.exp(-(42.0 - tm_c) / width_c))
        k_high_per_h = (k42 - k_low_per_h * (1.0 - s)) / s
    return ReleaseLaw(name, "temperature_logistic",
                      {"k_low_per_h": k_low_per_h, "k_high_per_h": k_high_per_h, "tm_c": tm_c, "width_c": width_c},
                      ("Needham et al. 2000 Cancer Res 60:1197 (lysolipid TSL, fast release at 41-42 °C)",
                       "Gasselhuber et al. 2012 Int J Hyperthermia 28:337 (temperature-dependent release model)",
                       "this work: logistic form, Tm 41.5 °C, width 0.5 °C, 50 % in 20 s at 42 °C, "
                       "k_low 0.05 1/h (0.07 1/h at 37 °C)"),
                      "Thermosensitive liposome: releases within seconds under mild hyperthermia (~42 °C).")


#: The release laws by name (default parameters).
RELEASE_LAWS: dict[str, ReleaseLaw] = {
    "free": free_drug(),
    "liposome": constant_release(),
    "ph_sensitive": ph_sensitive_release(),
    "thermosensitive": thermosensitive_release(),
}


def release_law(name: str) -> ReleaseLaw:
    """The registered release law called ``name``.

    Raises
    ------
    InputError
        For an unknown name, suggesting the nearest registered one.

    Examples
    --------
    >>> release_law("thermosensitive").kind
    'temperature_logistic'
    """
    if isinstance(name, str) and name in RELEASE_LAWS:
        return RELEASE_LAWS[name]
    close = difflib.get_close_matches(str(name).strip().lower().replace("-", "_").replace(" ", "_"),
                                      list(RELEASE_LAWS), n=1, cutoff=0.4)
    hint = f"Did you mean {close[0]!r}? " if close else ""
    raise InputError(f"unknown release law {name!r}",
                     fix=f"{hint}Known laws: {', '.join(RELEASE_LAWS)}.")


# --- heating field -----------------------------------------------------------------------------

def hyperthermia_temperature(distance_mm, *, radius_mm: float = 3.0, edge_mm: float = 0.5,
                             baseline_c: float = 37.0, target_c: float = 42.0) -> np.ndarray:
    r"""Temperature of a heated region, °C (this work, for the demo).

    .. math::

        T(d) = T_0 + \frac{T_h - T_0}{1 + e^{(d - R)/w}}

    with :math:`d` the distance from the centre of heating, :math:`R` = ``radius_mm``,
    :math:`w` = ``edge_mm``: ~``target_c`` well inside, ``baseline_c`` far away, the midpoint
    at :math:`d = R`.

    Parameters
    ----------
    distance_mm : array-like
        Distance from the heating focus, mm (>= 0).
    radius_mm : float, default=3.0
        Radius of the heated region, mm.
    edge_mm : float, default=0.5
        Width of the edge, mm.
    baseline_c, target_c : float, default=37.0, 42.0
        Body and heated temperatures, °C, within [30, 50].

    Returns
    -------
    ndarray, same shape as ``distance_mm``

    Examples
    --------
    >>> hyperthermia_temperature([0.0, 3.0, 10.0]).round(2).tolist()
    [41.99, 39.5, 37.0]
    """
    d = np.asarray(distance_mm, float)
    if not np.all(np.isfinite(d)) or np.any(d < 0):
        raise InputError("distances must be finite and >= 0 mm", fix="Give distances from the heating focus in mm.")
    if not (np.isfinite(radius_mm) and radius_mm > 0 and np.isfinite(edge_mm) and edge_mm > 0):
        raise InputError(f"radius and edge must be > 0 mm, got {radius_mm!r} and {edge_mm!r}",
                         fix="Give the heated radius and its edge width in mm.")
    _check_field([baseline_c, target_c], "temperature", *TEMPERATURE_RANGE_C, " °C")
    x = np.clip((d - radius_mm) / edge_mm, -700.0, 700.0)
    return baseline_c + (target_c - baseline_c) / (1.0 + np.exp(x))
