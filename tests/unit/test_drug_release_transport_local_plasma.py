"""Per-voxel plasma free drug (``simulate(local_plasma_free=...)``) of core.drug_release.transport."""

from __future__ import annotations

import numpy as np
import pytest

from core.drug_release.pressure import TissueGrid
from core.drug_release.transport import PlasmaInput, TransportParams, simulate
from core.errors import GeometryError, InputError

SHAPE = (14, 14)


def _grid():
    sv = np.zeros(SHAPE)
    sv[4, 3:11] = 0.3
    sv[10, 2:12] = 0.2
    return TissueGrid(5.0, sv, np.ones(SHAPE, bool))


def _pulse(t):
    return 8.0 * np.exp(-np.asarray(t, float) / 0.3)


def _run(local=None, plasma=PlasmaInput(), pressure=2.0):
    return simulate(_grid(), TransportParams(release_per_h=0.2), plasma, t_end_h=1.0, dt_h=0.02,
                    pressure_mmhg=pressure, local_plasma_free=local)


def test_uniform_local_field_equals_the_same_plasma_curve():
    ref = _run(plasma=PlasmaInput(free_uM=_pulse))
    loc = _run(local=lambda t: np.full(SHAPE, float(_pulse(t))))
    for sp in ("free", "bound"):
        np.testing.assert_allclose(getattr(loc, sp), getattr(ref, sp), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(loc.ledger.free_from_plasma, ref.ledger.free_from_plasma, rtol=1e-10)


def test_local_field_adds_to_plasma_and_superposes():
    left = np.zeros(SHAPE)
    left[:, :7] = 1.0
    a = _run(local=lambda t: left * _pulse(t))
    b = _run(local=lambda t: (1 - left) * 2.0 * _pulse(t))
    both = _run(local=lambda t: (left + 2.0 * (1 - left)) * _pulse(t))
    np.testing.assert_allclose(a.free + b.free, both.free, rtol=1e-9, atol=1e-12)
    # drug enters only through the vessels of the left half
    assert a.free[-1][:, :5].sum() > 5 * a.free[-1][:, 10:].sum()
    # with a carrier in plasma too, the result is the sum of the two sources (linear model)
    lip = PlasmaInput.liposomal(50.0, 5.0)
    np.testing.assert_allclose(_run(lambda t: left * _pulse(t), lip).free, a.free + _run(plasma=lip).free,
                               rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("pressure", [2.0, None])
def test_ledger_balances_with_a_local_source(pressure):
    rng = np.random.default_rng(3)
    field = rng.uniform(0, 5, SHAPE)
    sol = _run(local=lambda t: field * (t < 0.5), plasma=PlasmaInput.liposomal(30.0), pressure=pressure)
    assert sol.ledger.relative_imbalance() < 1e-10
    # the ledger's inflow equals the sum of gain x local plasma that an independent computation gives
    none = _run(plasma=PlasmaInput.liposomal(30.0), pressure=pressure)
    assert sol.ledger.free_from_plasma[-1] > none.ledger.free_from_plasma[-1] + 1.0


def test_bad_local_fields_are_refused():
    with pytest.raises(GeometryError, match="shape"):
        _run(local=lambda t: np.ones((3, 3)))
    with pytest.raises(InputError, match="negative"):
        _run(local=lambda t: -np.ones(SHAPE))
    with pytest.raises(InputError, match="NaN"):
        _run(local=lambda t: np.full(SHAPE, np.nan))
