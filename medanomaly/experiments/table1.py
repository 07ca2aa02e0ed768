"""CIFAR-10 Table 1 of Skip-GANomaly++: runs, protocols, run records and the results page.

Park et al., "Skip-GANomaly++: Skip Connections and Residual Blocks for
Anomaly Detection" (AAAI-24 student abstract), Table 1, reports the AUROC of
five models on the ten CIFAR-10 leave-one-class-out tasks. This module trains
one model on one abnormal class with one seed (:func:`run_one`), evaluates the
result under two protocols, stores a JSON record per run, and rebuilds the
table from every record (:func:`write_report`).

Protocols, always reported in separate columns:

``honest``
    The trainer selects the epoch on held-out normal images (lowest validation
    reconstruction error). The selected scorer scores the test set once, after
    training, with every network in eval mode, so a score depends only on its
    own image.
``paper``
    The evaluation of the authors' public code: the test set unshuffled with
    every normal image first, scored in batches of 64 with batch norm in
    training mode, test AUROC after every epoch, and the best epoch reported.
    Batch statistics then carry information about the batch's labels, and the
    epoch is chosen on the test labels.

Each epoch also records the eval-mode test AUROC of the same weights, for the
per-epoch curves on the results page only. It never selects anything.

The code is split by concept, and this module re-exports its public names:
:mod:`~medanomaly.experiments.published` (the published numbers and the order of
Table 1), :mod:`~medanomaly.experiments.profiles` (profiles and run configs),
:mod:`~medanomaly.experiments.protocol` (the paper protocol),
:mod:`~medanomaly.experiments.runner` (one run),
:mod:`~medanomaly.experiments.records` (run records and their aggregation),
:mod:`~medanomaly.experiments.report` and :mod:`~medanomaly.experiments.figures`
(the results page).
"""

from __future__ import annotations

from medanomaly.experiments.figures import (
    plot_bar_chart,
    plot_epoch_curves,
    plot_run_curves,
)
from medanomaly.experiments.profiles import (
    DEFAULT_EXPERIMENT,
    RunSpec,
    build_run_config,
    load_profile,
)
from medanomaly.experiments.protocol import (
    PAPER_BATCH_SIZE,
    PROTOCOLS,
    PaperProtocolCallback,
    dataset_labels,
    normals_first_order,
)
from medanomaly.experiments.published import (
    AUTHORS_CODE_REFERENCE,
    MODEL_LABELS,
    MODEL_ORDER,
    PUBLISHED_AUROC,
    PUBLISHED_CLASS_NAMES,
    PUBLISHED_CLASS_ORDER,
    PUBLISHED_SOURCE,
    canonical_class,
    published_class_name,
    sort_classes,
    sort_models,
)
from medanomaly.experiments.records import (
    RECORD_SCHEMA_VERSION,
    RECORD_SUFFIX,
    TableRow,
    aggregate,
    load_records,
    record_path,
    write_record,
)
from medanomaly.experiments.report import (
    CSV_HEADER,
    data_sizes,
    render_markdown,
    write_report,
    write_table_csv,
)
from medanomaly.experiments.runner import (
    CURVE_FILE,
    MLFLOW_RUN_FILE,
    run_one,
)

__all__ = [
    "AUTHORS_CODE_REFERENCE",
    "CSV_HEADER",
    "CURVE_FILE",
    "DEFAULT_EXPERIMENT",
    "MLFLOW_RUN_FILE",
    "MODEL_LABELS",
    "MODEL_ORDER",
    "PAPER_BATCH_SIZE",
    "PROTOCOLS",
    "PUBLISHED_AUROC",
    "PUBLISHED_CLASS_NAMES",
    "PUBLISHED_CLASS_ORDER",
    "PUBLISHED_SOURCE",
    "PaperProtocolCallback",
    "RECORD_SCHEMA_VERSION",
    "RECORD_SUFFIX",
    "RunSpec",
    "TableRow",
    "aggregate",
    "build_run_config",
    "canonical_class",
    "data_sizes",
    "dataset_labels",
    "load_profile",
    "load_records",
    "normals_first_order",
    "plot_bar_chart",
    "plot_epoch_curves",
    "plot_run_curves",
    "published_class_name",
    "record_path",
    "render_markdown",
    "run_one",
    "sort_classes",
    "sort_models",
    "write_record",
    "write_report",
    "write_table_csv",
]
