"""Experiments built on the library.

:mod:`medanomaly.experiments.table1` reproduces Table 1 of Park et al.,
Skip-GANomaly++ (AAAI-24 student abstract). It trains each model on
CIFAR-10 leave-one-class-out tasks and evaluates it twice: under an honest
protocol and as the authors' public code does. It keeps one JSON record per
run and writes the results table.
"""

from medanomaly.experiments.table1 import (
    MODEL_LABELS,
    PAPER_BATCH_SIZE,
    PUBLISHED_AUROC,
    PUBLISHED_CLASS_ORDER,
    PaperProtocolCallback,
    RunSpec,
    aggregate,
    build_run_config,
    load_profile,
    load_records,
    normals_first_order,
    run_one,
    write_report,
)

__all__ = [
    "MODEL_LABELS",
    "PAPER_BATCH_SIZE",
    "PUBLISHED_AUROC",
    "PUBLISHED_CLASS_ORDER",
    "PaperProtocolCallback",
    "RunSpec",
    "aggregate",
    "build_run_config",
    "load_profile",
    "load_records",
    "normals_first_order",
    "run_one",
    "write_report",
]
