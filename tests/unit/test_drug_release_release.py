"""Release-rate laws of liposomal doxorubicin and the demo heating field."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from core.drug_release.release import (
    RELEASE_LAWS,
    ReleaseLaw,
    constant_release,
    hyperthermia_temperature,
    ph_sensitive_release,
    release_law,
    thermosensitive_release,
)
from core.errors import InputError


def test_registry_names_and_kinds():
    assert set(RELEASE_LAWS) == {"free", "liposome", "ph_sensitive", "thermosensitive"}
    for name, law in RELEASE_LAWS.items():
        assert law.name == name and release_law(name) is law and law.sources
    assert [RELEASE_LAWS[n].needs for n in ("free", "liposome", "ph_sensitive", "thermosensitive")] == \
        [(), (), ("ph",), ("temperature_c",)]


def test_free_drug_is_not_encapsulated():
    law = release_law("free")
    assert not law.encapsulated
    assert np.isinf(law.rate_per_h(ph=[7.0, 6.5])).all()
    np.testing.assert_array_equal(law.fraction_released([0.0, 1.0]), [1.0, 1.0])


def test_constant_law_ignores_conditions():
    law = release_law("liposome")
    k = law.rate_per_h(ph=np.full((2, 3), 6.5), temperature_c=42.0)
    assert k.shape == (2, 3) and np.all(k == law.parameters["k_per_h"])
    assert law.rate_per_h().shape == ()


def test_ph_law_monotonic_limits_and_midpoint():
    law = ph_sensitive_release(k_min_per_h=0.01, k_max_per_h=1.0, ph50=6.6, hill=3.0)
    ph = np.linspace(4.0, 9.0, 201)
    k = law.rate_per_h(ph=ph)
    assert np.all(np.diff(k) < 0)                                     # more acid, faster release
    assert k[0] == pytest.approx(1.0, rel=1e-4) and k[-1] == pytest.approx(0.01, rel=1e-4)
    assert float(law.rate_per_h(ph=6.6)) == pytest.approx(0.505, rel=1e-12)
    # Hill form: one unit of pH from pH50 changes the odds by 10**hill
    k1 = float(law.rate_per_h(ph=7.6))
    assert (k1 - 0.01) / (1.0 - k1) == pytest.approx(10.0**-3, rel=1e-9)


def test_temperature_law_monotonic_limits_and_midpoint():
    law = thermosensitive_release(k_low_per_h=0.1, k_high_per_h=200.0, tm_c=41.0, width_c=0.4)
    t = np.linspace(30.0, 50.0, 201)
    k = law.rate_per_h(temperature_c=t)
    assert np.all(np.diff(k) > 0)
    assert k[0] == pytest.approx(0.1, rel=1e-6) and k[-1] == pytest.approx(200.0, rel=1e-6)
    assert float(law.rate_per_h(temperature_c=41.0)) == pytest.approx(100.05, rel=1e-12)


def test_default_thermosensitive_releases_half_in_20_s_at_42_c():
    law = release_law("thermosensitive")
    assert float(law.fraction_released(20.0 / 3600.0, temperature_c=42.0)) == pytest.approx(0.5, abs=1e-9)
    # slow at body temperature: < 10 % in an hour
    assert float(law.fraction_released(1.0, temperature_c=37.0)) < 0.1
    k = law.rate_per_h(temperature_c=[37.0, 42.0])
    assert k[1] / k[0] > 1000


@pytest.mark.parametrize("name, conditions, t_end_h", [
    ("liposome", {}, 48.0),
    ("ph_sensitive", {"ph": 6.4}, 6.0),
    ("thermosensitive", {"temperature_c": 41.5}, 0.02),
])
def test_fraction_released_matches_ode(name, conditions, t_end_h):
    law = release_law(name)
    k = float(law.rate_per_h(**conditions))
    times = np.linspace(0.0, t_end_h, 7)
    sol = solve_ivp(lambda t, y: [-k * y[0], k * y[0]], (0.0, t_end_h), [1.0, 0.0], t_eval=times,
                    method="LSODA", rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(law.fraction_released(times, **conditions), sol.y[1], atol=1e-7)


def test_broadcasting_over_maps():
    law = release_law("thermosensitive")
    temp = hyperthermia_temperature(np.array([[0.0, 2.0, 3.0, 6.0]]))
    k = law.rate_per_h(ph=np.full((3, 1), 7.0), temperature_c=temp)
    assert k.shape == (3, 4)
    assert np.all(np.diff(k[0]) < 0)                                  # hotter centre releases faster


def test_hyperthermia_temperature_profile():
    d = np.linspace(0.0, 10.0, 101)
    t = hyperthermia_temperature(d, radius_mm=3.0, edge_mm=0.5)
    assert np.all(np.diff(t) < 0)
    assert t[0] == pytest.approx(42.0, abs=0.02) and t[-1] == pytest.approx(37.0, abs=1e-5)
    assert float(hyperthermia_temperature(3.0, radius_mm=3.0)) == pytest.approx(39.5, abs=1e-12)
    with pytest.raises(InputError, match=">= 0 mm"):
        hyperthermia_temperature([-1.0])
    with pytest.raises(InputError, match="temperature"):
        hyperthermia_temperature([1.0], target_c=60.0)


def test_unknown_name_suggests_nearest():
    with pytest.raises(InputError, match="Did you mean 'thermosensitive'"):
        release_law("thermosensitve")
    with pytest.raises(InputError, match="Did you mean 'ph_sensitive'"):
        release_law("pH-sensitive")
    with pytest.raises(InputError) as err:
        release_law("zzz")
    assert "unknown release law 'zzz'" in str(err.value) and "free, liposome" in str(err.value)


def test_input_validation():
    ph_law, t_law = release_law("ph_sensitive"), release_law("thermosensitive")
    with pytest.raises(InputError, match="got 3.9 to 3.9"):
        ph_law.rate_per_h(ph=3.9)
    with pytest.raises(InputError, match="NaN"):
        ph_law.rate_per_h(ph=[7.0, np.nan])
    with pytest.raises(InputError, match="needs a pH"):
        ph_law.rate_per_h(temperature_c=37.0)
    with pytest.raises(InputError, match=r"\[30, 50\] °C, got 55"):
        t_law.rate_per_h(temperature_c=55.0)
    with pytest.raises(InputError, match="needs a temperature"):
        t_law.rate_per_h(ph=7.0)
    with pytest.raises(InputError, match="NaN"):
        release_law("liposome").rate_per_h(temperature_c=np.nan)
    with pytest.raises(InputError, match="times"):
        t_law.fraction_released(-1.0, temperature_c=37.0)


def test_law_parameters_are_validated_and_frozen():
    with pytest.raises(InputError, match="k_max >= k_min"):
        ph_sensitive_release(k_min_per_h=1.0, k_max_per_h=0.1)
    with pytest.raises(InputError, match=">= 0 1/h"):
        constant_release(-0.1)
    with pytest.raises(InputError, match="needs parameters"):
        ReleaseLaw("x", "constant", {"k": 1.0})
    law = release_law("liposome")
    with pytest.raises(dataclasses.FrozenInstanceError):
        law.name = "other"
    with pytest.raises(TypeError):
        law.parameters["k_per_h"] = 1.0
    assert hash(law) == hash(constant_release())
    assert math.isclose(law.parameters["k_per_h"], 0.004)
