"""BED: the Lea-Catcheside factor (closed forms, limits, numerical integral), a hand example, cycle planning."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.dosimetry.radiobiology import (ORGAN_RADIOBIOLOGY, bed, bed_monoexponential, cumulative_bed,
                                         cycles_remaining, eqd2, g_factor_monoexponential, lea_catcheside_g,
                                         organ_radiobiology, plan_cycles)
from core.errors import InputError


def _g_sum_of_exponentials(a, lam, mu):
    """G of R(t) = sum_i a_i exp(-lam_i t): the double integral is sum_ij a_i a_j / ((l_i+l_j)(l_i+mu))."""
    a, lam = np.asarray(a, float), np.asarray(lam, float)
    double = sum(a[i] * a[j] / ((lam[i] + lam[j]) * (lam[i] + mu)) for i in range(a.size) for j in range(a.size))
    return 2 * double / np.sum(a / lam) ** 2


def test_monoexponential_g_and_its_limits():
    mu = math.log(2) / 2.8
    lam = math.log(2) / 50.0
    assert g_factor_monoexponential(50.0, 2.8) == pytest.approx(lam / (mu + lam), rel=1e-14)
    assert g_factor_monoexponential(50.0, 2.8) == pytest.approx(_g_sum_of_exponentials([1.0], [lam], mu))
    assert g_factor_monoexponential(1e-6, 2.8) == pytest.approx(1.0, abs=1e-6)  # fast decay: acute dose
    assert g_factor_monoexponential(1e6, 2.8) == pytest.approx(0.0, abs=1e-5)   # slow decay: full repair
    assert g_factor_monoexponential(2.8, 2.8) == pytest.approx(0.5)


def test_numerical_g_matches_the_closed_forms():
    t = np.linspace(0, 150, 601)
    for t_eff in (5.0, 50.0, 160.0):
        numeric = lea_catcheside_g(t, 3.0 * np.exp(-math.log(2) * t / t_eff), 2.8)
        assert numeric == pytest.approx(g_factor_monoexponential(t_eff, 2.8), rel=1e-5)
    # uptake then washout, R = exp(-l1 t) - exp(-l2 t)
    l1, l2, mu = math.log(2) / 40, math.log(2) / 2, math.log(2) / 1.5
    t = np.linspace(0, 300, 1201)
    numeric = lea_catcheside_g(t, np.exp(-l1 * t) - np.exp(-l2 * t), 1.5)
    assert numeric == pytest.approx(_g_sum_of_exponentials([1, -1], [l1, l2], mu), rel=1e-5)
    # constant dose rate for T hours (no tail): G = 2 (mu T - 1 + exp(-mu T)) / (mu T)^2
    mu = math.log(2) / 2.8
    for big_t in (0.5, 10.0, 100.0):
        x = mu * big_t
        assert lea_catcheside_g([0, big_t], [1, 1], 2.8, tail="none") == pytest.approx(
            2 * (x - 1 + math.exp(-x)) / x**2, rel=1e-5)


def test_bed_of_a_hand_example():
    # kidneys: 4 Gy at T_eff 50 h, alpha/beta 2.6 Gy, T_rep 2.8 h
    # G = 2.8 / 52.8 = 0.0530303; BED = 4 + 16 * 0.0530303 / 2.6 = 4.32634 Gy
    assert bed_monoexponential(4.0, 2.6, 2.8, 50.0) == pytest.approx(4.32634, abs=1e-5)
    assert bed(2.0, 10.0) == pytest.approx(2.4)
    np.testing.assert_allclose(bed([0.0, 2.0], 3.0, g=[1.0, 0.5]), [0.0, 2 + 4 * 0.5 / 3])
    assert eqd2(bed(2.0, 3.0), 3.0) == pytest.approx(2.0)  # a 2-Gy fraction is its own EQD2


def test_cycles_math():
    np.testing.assert_allclose(cumulative_bed([4.0, 4.5, 5.0]), [4.0, 8.5, 13.5])
    assert cycles_remaining(10.0, 40.0) == 4          # exactly at the limit counts
    assert cycles_remaining(10.0, 40.0, given=3) == 1
    assert cycles_remaining(10.0, 40.0, given=5) == 0
    assert cycles_remaining(9.9, 40.0) == 4 and cycles_remaining(10.1, 40.0) == 3
    assert cycles_remaining(5.0, 28.0, delivered_gy=12.0) == 3


def test_plan_cycles():
    plan = plan_cycles({"kidneys": 5.0, "red_marrow": [0.3, 0.4, 0.5, 0.6, 0.5, 0.4], "tumour": 20.0}, 6,
                       effective_half_life_h={"kidneys": 50.0, "red_marrow": 30.0, "tumour": 80.0})
    k = plan.table[plan.table.organ == "kidneys"]
    per = 5.0 * (1 + 5.0 * (2.8 / 52.8) / 2.6)  # 5.51 Gy BED per cycle
    np.testing.assert_allclose(k.cumulative_bed_gy, per * np.arange(1, 7))
    assert plan.first_exceeding_cycle["kidneys"] is None
    assert plan.cycles_allowed["kidneys"] == math.floor(40.0 / per)
    # marrow limit 2 Gy on absorbed dose: cumulative 0.3, 0.7, 1.2, 1.8, 2.3 -> exceeded at cycle 5
    assert plan.first_exceeding_cycle["red_marrow"] == 5 and plan.cycles_allowed["red_marrow"] == 4
    assert plan.cycles_allowed["tumour"] is None and plan.table.within_limit.sum() == 6 + 4 + 6
    high = plan_cycles({"kidneys": 5.0}, 6, effective_half_life_h=50.0, high_risk=True)
    assert high.cycles_allowed["kidneys"] == math.floor(28.0 / per) == 5
    assert high.first_exceeding_cycle["kidneys"] == 6


def test_every_organ_entry_is_sourced():
    for name, p in ORGAN_RADIOBIOLOGY.items():
        assert p.name == name and p.alpha_beta_gy > 0 and p.repair_half_time_h > 0 and p.sources
    assert organ_radiobiology("Kidney").alpha_beta_gy == 2.6 and ORGAN_RADIOBIOLOGY["kidneys"].limit_gy == 40.0


def test_bad_input():
    with pytest.raises(InputError, match="did you mean"):
        organ_radiobiology("kidnys")
    with pytest.raises(InputError, match="not strictly increasing"):
        lea_catcheside_g([0, 2, 1], [1, 1, 1], 2.8)
    with pytest.raises(InputError, match="does not decrease"):
        lea_catcheside_g([0, 1, 2], [1, 1, 1], 2.8)
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        bed(2.0, 3.0, g=1.5)
    with pytest.raises(InputError, match="doses given"):
        plan_cycles({"kidneys": [1.0, 2.0]}, 3, effective_half_life_h=50.0)
    with pytest.raises(InputError, match="positive"):
        cycles_remaining(0.0, 40.0)
