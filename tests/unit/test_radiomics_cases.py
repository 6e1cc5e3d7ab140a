"""Radiomics of stored cases: read back without recomputation, the cohort table, and the
nested-CV evaluation stored as a cohort Result."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import InputError
from core.radiomics.cases import (EVALUATION_KIND, FEATURES_KIND, evaluate_store_cohort, find_store_evaluation,
                                  labelled, load_store_evaluation, store_feature_table, stored_case_radiomics)
from tests.support.radiomics_store import N_FEATURES, seed_radiomics_store


@pytest.fixture
def seeded(tmp_path):
    from core.cases.repository import CaseRepository

    repo = CaseRepository(f"sqlite:///{tmp_path / 'cases.db'}", tmp_path / "data")
    from core.cases.db import init_db

    init_db(f"sqlite:///{tmp_path / 'cases.db'}")
    ids = seed_radiomics_store(repo, tmp_path, n=12)
    yield repo, ids
    repo.close()


def test_feature_table_reads_stored_results_and_reports_the_rest(seeded, tmp_path):
    repo, ids = seeded
    from tests.support import case_data as cd

    path = cd.write_nifti_file(cd.pet_dynamic(), tmp_path / "x.nii.gz")
    extra = repo.import_series(path, pseudonym="NOMASK")
    todo = repo.import_series(path, pseudonym="TODO")
    repo.add_mask(todo.study_id, cd.mask_on(cd.pet_dynamic()), "tumour")
    table, missing = store_feature_table(repo, ids + [extra.study_id, todo.study_id], compute=False)
    assert list(table.index) == ids and missing[todo.study_id] == "not computed yet"
    assert "no tumour mask" in missing[extra.study_id]      # known from the records, before any computation
    assert list(table.columns[:4]) == ["patient_id", "site", "label", "idh"]
    assert table.shape[1] == 4 + N_FEATURES + 1 and np.isnan(table.loc[ids[0], "static_stat_undefined"])
    assert table.loc[ids[0], "idh"] == "wildtype" and table.loc[ids[1], "label"] == "radionecrosis"
    # computing for the case without a mask: a clear message, not an exception
    _, missing = store_feature_table(repo, [extra.study_id], compute=True)
    assert "no tumour mask" in missing[extra.study_id]
    assert len(repo.list_results(ids[0], FEATURES_KIND)) == 1   # nothing recomputed


def test_stored_features_are_keyed_by_the_mask(seeded):
    repo, ids = seeded
    assert stored_case_radiomics(repo, ids[0]) is not None
    from tests.support import case_data as cd

    other = cd.mask_on(cd.pet_dynamic(), box=(slice(0, 2), slice(0, 2), slice(0, 2)))
    repo.add_mask(ids[0], other, "tumour")        # a new tumour mask: the stored features no longer apply
    assert stored_case_radiomics(repo, ids[0]) is None


def test_evaluation_is_stored_once_and_reloaded(seeded):
    repo, ids = seeded
    table, _ = store_feature_table(repo, ids, compute=False)
    rows, y = labelled(table)
    assert y.tolist() == [1, 0] * 6
    assert find_store_evaluation(repo, table) is None
    seen = []
    record = evaluate_store_cohort(repo, table, models=("logistic", "random_forest"),
                                   progress=lambda f, m: seen.append(f))
    assert seen[-1] == 1.0 and record.kind == EVALUATION_KIND and record.study_ids == tuple(ids)
    assert record.parameters["outer"] == 5 and record.parameters["inner"] == 3
    data = load_store_evaluation(repo, record)
    assert data["y"].tolist() == y.tolist() and set(data["scores"]) == {"logistic", "random_forest"}
    s = record.summary
    assert s["n_progression"] == 6 and s["best"] in ("logistic", "random_forest")
    other = "random_forest" if s["best"] == "logistic" else "logistic"
    assert s["models"][s["best"]]["delong_vs_best"] is None
    assert s["models"][other]["delong_vs_best"]["auc_b"] == pytest.approx(s["models"][s["best"]]["auc"]["auc"])
    assert {"value", "ci_low", "ci_high"} <= set(s["models"][other]["metrics"]["sensitivity"])
    from core.evaluation import roc_auc_ci

    assert s["models"]["logistic"]["auc"]["auc"] == pytest.approx(roc_auc_ci(y, data["scores"]["logistic"])["auc"])
    again = evaluate_store_cohort(repo, table, models=("logistic", "random_forest"))
    assert again.id == record.id and len(repo.list_cohort_results(EVALUATION_KIND)) == 1


def test_evaluation_lowers_folds_for_small_classes_and_refuses_too_few(seeded):
    repo, ids = seeded
    table, _ = store_feature_table(repo, ids[:8], compute=False)       # 4 of each class
    record = evaluate_store_cohort(repo, table, models=("logistic",))
    assert record.parameters["outer"] == 4 and record.parameters["inner"] == 3
    small, _ = store_feature_table(repo, ids[:6], compute=False)       # 3 of each class
    with pytest.raises(InputError, match="at least 4 of each"):
        evaluate_store_cohort(repo, small)
