"""Pieces of the end-to-end demo (``make demo``) that are worth testing on their own.

The demo scores whole DICOM series, and the labelled manifest ``test.csv`` of
the synthetic cohort names one folder per series. :func:`join_scores_with_labels`
gives every scored slice the label of the manifest row whose path is that slice's
file or one of its folders. :func:`format_summary` writes the closing summary.
"""

from __future__ import annotations

import csv
import json
import logging
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

REGISTERED_MODEL_NAME = "demo-ct-head"
COHORT_DIRNAME = "cohort"
RUNS_DIRNAME = "runs"
SCORES_DIRNAME = "scores"
SUMMARY_FILENAME = "summary.json"
# `mlflow ui` listens here unless --host or --port say otherwise (MLflow 3.17).
MLFLOW_UI_ADDRESS = "http://127.0.0.1:5000"


@dataclass
class LabelledScores:
    """Scores of ``scores.csv`` joined with the labels of a manifest, in ``scores.csv`` order.

    Attributes:
        paths: scored file paths as ``scores.csv`` lists them.
        indices: frame or slice index inside each file.
        scores: (N,) anomaly scores.
        labels: (N,) 0 normal, 1 abnormal.
        groups: the manifest's group (subject) of each image.
    """

    paths: list[str]
    indices: list[int]
    scores: np.ndarray
    labels: np.ndarray
    groups: list[str]


def _manifest_labels(manifest: Path) -> dict[Path, tuple[int, str]]:
    """Return ``{resolved path: (label, group)}`` for the rows of a labelled manifest."""
    from medanomaly.data.manifest import read_manifest

    rows = read_manifest(manifest, labelled=True)
    return {Path(row.path).resolve(): (row.label, row.group) for row in rows}


def _find_label(path: Path, labels: dict[Path, tuple[int, str]]) -> tuple[int, str] | None:
    """Return the entry of ``path`` or of its nearest folder that the manifest lists."""
    for candidate in (path, *path.parents):
        if candidate in labels:
            return labels[candidate]
    return None


def join_scores_with_labels(scores_csv: str | Path, manifest: str | Path) -> LabelledScores:
    """Label each row of a ``scores.csv`` from the manifest row that contains its file.

    Relative paths in ``scores.csv`` are taken relative to the working
    directory, as ``medanomaly score`` wrote them.

    Args:
        scores_csv: the table written by ``medanomaly score``.
        manifest: labelled manifest whose ``path`` column names the scored files
            or folders that contain them.

    Raises:
        FileNotFoundError: ``scores_csv`` or ``manifest`` does not exist.
        ValueError: a scored file is under no manifest row, or ``scores_csv``
            lacks the ``path``, ``frame_or_slice`` or ``score`` column. The
            message names the row.
    """
    scores_csv = Path(scores_csv)
    if not scores_csv.is_file():
        raise FileNotFoundError(f"Score table not found: {scores_csv}. Run `medanomaly score` first.")
    labels = _manifest_labels(Path(manifest))

    paths, indices, scores, targets, groups = [], [], [], [], []
    with open(scores_csv, newline="", encoding="utf-8") as stream:
        reader = csv.DictReader(stream)
        missing = {"path", "frame_or_slice", "score"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(
                f"{scores_csv}: missing column(s) {sorted(missing)}; expected the header that "
                "`medanomaly score` writes."
            )
        for values in reader:
            entry = _find_label(Path(values["path"]).resolve(), labels)
            if entry is None:
                raise ValueError(
                    f"{scores_csv} row {reader.line_num}: {values['path']} is in no row of "
                    f"{manifest}. Score only the files and folders that the manifest lists."
                )
            paths.append(values["path"])
            indices.append(int(values["frame_or_slice"]))
            scores.append(float(values["score"]))
            targets.append(entry[0])
            groups.append(entry[1])
    logger.info("Joined %d scores from %s with labels from %s", len(paths), scores_csv, manifest)
    return LabelledScores(
        paths=paths,
        indices=indices,
        scores=np.asarray(scores, dtype=np.float64),
        labels=np.asarray(targets, dtype=np.int64),
        groups=groups,
    )


def lesion_types_by_file(lesions_json: str | Path) -> dict[Path, set[str]]:
    """Return ``{resolved DICOM file: lesion types on that slice}`` from a cohort's lesions.json.

    The DICOM writer names each file ``slice-NNN.dcm`` after its 0-based slice
    index in the volume, which is the index that lesions.json lists.
    """
    lesions_json = Path(lesions_json)
    document = json.loads(lesions_json.read_text(encoding="utf-8"))
    cohort_dir = lesions_json.resolve().parent
    types: dict[Path, set[str]] = {}
    for subject in document["subjects"]:
        if not subject.get("dicom"):
            continue
        series_dir = cohort_dir / subject["dicom"]
        for lesion in subject["lesions"]:
            for index in lesion["slices"]:
                types.setdefault(series_dir / f"slice-{index:03d}.dcm", set()).add(lesion["type"])
    return types


def auroc_by_lesion_type(joined: LabelledScores, lesions_json: str | Path) -> dict[str, dict[str, float]]:
    """Compute the AUROC of each lesion type: its slices against every normal slice.

    Returns ``{type: {"auroc": value, "slices": count}}``, types in alphabetical order.

    A slice with two lesion types counts for both. Abnormal slices that
    lesions.json does not describe are left out.
    """
    from sklearn.metrics import roc_auc_score

    types = lesion_types_by_file(lesions_json)
    normal = joined.scores[joined.labels == 0]
    by_type: dict[str, list[float]] = {}
    for path, score, label in zip(joined.paths, joined.scores, joined.labels):
        if label != 1:
            continue
        for kind in types.get(Path(path).resolve(), ()):
            by_type.setdefault(kind, []).append(float(score))

    result = {}
    for kind, scores in sorted(by_type.items()):
        labels = np.r_[np.zeros(normal.size), np.ones(len(scores))]
        auroc = float(roc_auc_score(labels, np.r_[normal, scores])) if normal.size else float("nan")
        result[kind] = {"auroc": auroc, "slices": len(scores)}
    return result


def mlflow_executable() -> str:
    """Return how to call ``mlflow``: the bare name when it is on PATH, else the path beside Python."""
    beside_python = Path(sys.executable).parent / "mlflow"
    on_path = shutil.which("mlflow")
    if on_path and (not beside_python.exists() or Path(on_path).resolve() == beside_python.resolve()):
        return "mlflow"
    if beside_python.exists():
        return str(beside_python)
    return "mlflow"


def mlflow_ui_command(tracking_uri: str, executable: str = "mlflow") -> str:
    """Return the shell command that opens the MLflow UI on ``tracking_uri``."""
    return f"{shlex.quote(executable)} ui --backend-store-uri {shlex.quote(tracking_uri)}"


def registry_url(model_name: str, address: str = MLFLOW_UI_ADDRESS) -> str:
    """Return the MLflow UI page of a registered model."""
    return f"{address}/#/models/{model_name}"


@dataclass
class DemoSummary:
    """Where the demo put everything, and how well it found the lesions.

    Attributes:
        cohort_dir: the synthetic cohort.
        run_dir: the training run folder (checkpoints, config, history).
        scores_dir: output folder of ``medanomaly score``.
        panel_paths: heat-map panels, highest score first.
        model_uri: registered model URI that was scored.
        tracking_uri: MLflow store.
        metrics: ``compute_metrics`` output on the joined scores.
        by_lesion_type: :func:`auroc_by_lesion_type` output.
        seconds: wall-clock seconds per demo step.
    """

    cohort_dir: Path
    run_dir: Path
    scores_dir: Path
    panel_paths: list[Path]
    model_uri: str
    tracking_uri: str
    metrics: dict[str, float]
    by_lesion_type: dict[str, dict[str, float]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return the summary with plain JSON types."""
        return {
            "cohort_dir": str(self.cohort_dir),
            "run_dir": str(self.run_dir),
            "scores_csv": str(self.scores_dir / "scores.csv"),
            "panels": [str(path) for path in self.panel_paths],
            "model_uri": self.model_uri,
            "tracking_uri": self.tracking_uri,
            "metrics": {key: float(value) for key, value in self.metrics.items()},
            "by_lesion_type": self.by_lesion_type,
            "seconds": {key: round(value, 1) for key, value in self.seconds.items()},
        }


def format_summary(summary: DemoSummary, model_name: str, ui_command: str) -> str:
    """Format the closing summary: locations, AUROC and how to open the MLflow UI."""
    metrics = summary.metrics
    panels = summary.panel_paths
    lines = [
        "",
        "Demo finished" + (f" in {sum(summary.seconds.values()):.0f} s" if summary.seconds else ""),
        f"  cohort       {summary.cohort_dir}",
        f"  run folder   {summary.run_dir}",
        f"  model        {summary.model_uri}",
        f"  scores       {summary.scores_dir / 'scores.csv'}",
        f"  heat maps    {len(panels)} panel(s) in {summary.scores_dir / 'panels'}",
    ]
    if panels:
        lines.append(f"  top panel    {panels[0]}")
    lines += [
        f"  AUROC        {metrics['auroc']:.3f} on {int(metrics['n_normal'])} healthy and "
        f"{int(metrics['n_abnormal'])} lesion slices of held-out subjects",
    ]
    for kind, values in summary.by_lesion_type.items():
        lines.append(f"    {kind:<10} {values['auroc']:.3f} on its {int(values['slices'])} slices")
    if "sensitivity" in metrics:
        lines.append(
            f"  at threshold sensitivity {metrics['sensitivity']:.3f}, "
            f"specificity {metrics['specificity']:.3f}"
        )
    lines += [
        "",
        "Review the registered model in the MLflow UI:",
        f"  {ui_command}",
        f"  then open {registry_url(model_name)}",
    ]
    return "\n".join(lines)
