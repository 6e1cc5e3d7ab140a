"""The case store: patients, studies, series, masks, labels, results and the audit trail.

* :mod:`core.cases.repository` -- :class:`CaseRepository`, the only code with SQL (its import pipeline lives in :mod:`core.cases.importing`).
* :mod:`core.cases.records` -- the plain frozen records it returns.
* :mod:`core.cases.db` -- engines and Alembic migrations (:func:`init_db`).
* :mod:`core.cases.store` -- the content-addressed file store.
* :mod:`core.cases.deid` -- DICOM de-identification (PS3.15 Basic Profile, dicognito).
* :mod:`core.cases.models` -- the ORM models (used by the repository, its import pipeline and the migrations only).

Example::

    from core.cases import CaseRepository
    repo = CaseRepository()               # THERABOARD_DB_URL / THERABOARD_DATA_DIR, migrated
    series = repo.import_series("pet_dicom.zip", role="dynamic_pet")
    volume = repo.load_series(series.id)
"""

from core.cases.db import init_db
from core.cases.records import (
    CASE_COLUMNS,
    AuditRecord,
    CaseDetail,
    CaseSummary,
    LabelRecord,
    MaskRecord,
    ResultRecord,
    CohortResultRecord,
    SeriesRecord,
)
from core.cases.repository import CaseNotFoundError, CaseRepository

__all__ = [
    "CaseRepository",
    "CaseNotFoundError",
    "init_db",
    "CASE_COLUMNS",
    "CaseSummary",
    "CaseDetail",
    "SeriesRecord",
    "MaskRecord",
    "LabelRecord",
    "ResultRecord",
    "CohortResultRecord",
    "AuditRecord",
]
