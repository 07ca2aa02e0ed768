"""Synthetic head-CT cohorts for the demo, tests and benchmarks.

``write_cohort`` writes healthy training subjects, held-out healthy subjects
and abnormal subjects with haemorrhage-like or infarct-like lesions, as DICOM
series and NIfTI volumes with CSV manifests. The lower-level pieces render
phantoms (``phantom``), paint lesions (``lesions``) and write files
(``writers``) for callers that need images in memory or other layouts.
"""

from medanomaly.synthetic.cohort import (
    CohortInfo,
    SubjectRecord,
    SyntheticSubject,
    synthesize_subject,
    write_cohort,
)
from medanomaly.synthetic.lesions import HAEMORRHAGE, INFARCT, LESION_HU_RANGES, Lesion
from medanomaly.synthetic.phantom import SeriesGeometry, make_geometry, render_slice, sample_head
from medanomaly.synthetic.writers import (
    PATIENT_ID_PREFIX,
    PATIENT_NAME_PREFIX,
    patient_id,
    patient_name,
    write_dicom_series,
    write_nifti,
)

__all__ = [
    "CohortInfo",
    "HAEMORRHAGE",
    "INFARCT",
    "LESION_HU_RANGES",
    "Lesion",
    "PATIENT_ID_PREFIX",
    "PATIENT_NAME_PREFIX",
    "SeriesGeometry",
    "SubjectRecord",
    "SyntheticSubject",
    "make_geometry",
    "patient_id",
    "patient_name",
    "render_slice",
    "sample_head",
    "synthesize_subject",
    "write_cohort",
    "write_dicom_series",
    "write_nifti",
]
