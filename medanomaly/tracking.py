"""MLflow tracking: store selection, run logging, model logging, registry and loading.

The tracking store is ``TrackingConfig.tracking_uri`` when set, else the
``MLFLOW_TRACKING_URI`` environment variable, else ``sqlite:///mlflow.db`` in the
working directory. MLflow 3.17 puts the artifacts of a sqlite store in
``./mlruns`` unless an experiment sets another location, so experiments created
here on a sqlite store keep their artifacts in ``mlartifacts/`` beside the
database file.
Stores behind a tracking server (``http://...``) choose their own artifact root.

Nothing that identifies a patient is logged: params come from the configuration
(paths and numbers), tags are fixed keys, and artifacts refer to images by path
and frame or slice index only.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np
import torch

import medanomaly
from medanomaly.config import Config

logger = logging.getLogger(__name__)

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
ARTIFACTS_DIRNAME = "mlartifacts"
# Artifact name of the scorer inside a run, so ``runs:/RUN_ID/model`` finds it.
MODEL_ARTIFACT_NAME = "model"
TAG_PREFIX = "medanomaly."
INTENDED_USE = (
    "Research triage aid: ranks images by how unlike the healthy training images "
    "they are, for review by a qualified reader. Not a diagnostic device; do not "
    "use it for clinical decisions."
)
_MLFLOW_URI_PREFIXES = ("models:", "runs:", "mlflow-artifacts:")
_METRIC_NAME_INVALID = re.compile(r"[^\w.\-/ ]")
# MLflow limits (mlflow.utils.validation, version 3.17).
_MAX_PARAM_VALUE_LENGTH = 6000
_MAX_KEY_LENGTH = 250


# ---------------------------------------------------------------------------
# Store selection


def resolve_tracking_uri(configured: str | None = None) -> str:
    """Return the tracking URI to use, with a relative sqlite path made absolute.

    Args:
        configured: ``TrackingConfig.tracking_uri``; it wins over ``MLFLOW_TRACKING_URI``.

    Raises:
        ValueError: for a file store (a plain folder or ``file:`` URI), which
            MLflow 3 deprecates.
    """
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    scheme = urlparse(uri).scheme
    # A one-letter scheme is a Windows drive letter, so that is a folder too.
    if len(scheme) <= 1 or scheme == "file":
        raise ValueError(
            f"Tracking URI '{uri}' is a file store, which MLflow 3 deprecates. "
            "Use a database such as sqlite:///mlflow.db or a tracking server URL "
            "(set MLFLOW_TRACKING_URI or tracking.tracking_uri)."
        )
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        # sqlite:///relative.db is relative to the working directory; pin it now so the
        # artifact folder below lands beside the same file.
        relative = unquote(uri[len("sqlite:///") :])
        if relative != ":memory:":
            uri = "sqlite:///" + str(Path(relative).resolve())
    return uri


def sqlite_database(tracking_uri: str) -> Path | None:
    """Return the database file of a ``sqlite:///`` URI, or None for other stores and ``:memory:``."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    db_path = unquote(tracking_uri[len("sqlite:///") :])
    if db_path == ":memory:":
        return None
    return Path(db_path).resolve()


def default_artifact_location(tracking_uri: str) -> str | None:
    """Return the artifact folder URI for new experiments on ``tracking_uri``.

    A sqlite store gets ``mlartifacts/`` beside its database file. Other stores
    return ``None`` so that the server or MLflow picks the location.
    """
    database = sqlite_database(tracking_uri)
    if database is None:
        return None
    return (database.parent / ARTIFACTS_DIRNAME).as_uri()


def use_tracking_store(configured: str | None = None) -> str:
    """Point MLflow's tracking and registry clients at the resolved store and return its URI.

    The model registry is always the tracking store. MLflow 3.17 copies both URIs
    into ``MLFLOW_TRACKING_URI`` and ``MLFLOW_REGISTRY_URI`` when they are set, so a
    registry URI read back from the environment could be a stale one from this process.
    """
    import mlflow

    uri = resolve_tracking_uri(configured)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    logger.debug("MLflow tracking store: %s", uri)
    return uri


def get_or_create_experiment(name: str, tracking_uri: str) -> str:
    """Return the id of experiment ``name``, creating it with a local artifact folder.

    Raises:
        ValueError: if the experiment exists but was deleted.
    """
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        location = default_artifact_location(tracking_uri)
        experiment_id = client.create_experiment(name, artifact_location=location)
        logger.info("Created MLflow experiment '%s' (artifacts: %s)", name, location or "server default")
        return experiment_id
    if experiment.lifecycle_stage == "deleted":
        raise ValueError(
            f"MLflow experiment '{name}' was deleted. Restore it with "
            f"`mlflow experiments restore --experiment-id {experiment.experiment_id}` "
            "or choose another name with --experiment."
        )
    return experiment.experiment_id


# ---------------------------------------------------------------------------
# Run contents


def flatten_config(values: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Flatten nested mappings into ``{"section.key": "value"}`` MLflow params.

    Lists are written as JSON so ``[16, 32]`` stays readable; ``None`` becomes ``"null"``.
    """
    flat: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            if not value:
                flat[name] = "{}"
            flat.update(flatten_config(value, prefix=f"{name}."))
        elif isinstance(value, (list, tuple)):
            flat[name] = json.dumps(list(value))
        elif value is None:
            flat[name] = "null"
        else:
            flat[name] = str(value)
    return {
        key[:_MAX_KEY_LENGTH]: value[:_MAX_PARAM_VALUE_LENGTH] for key, value in flat.items()
    }


def file_sha256(path: str | Path) -> str:
    """Return the SHA-256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_tags(config: Config, run_type: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return the tags every medanomaly run carries.

    Args:
        config: the resolved configuration.
        run_type: ``train``, ``evaluate`` or ``score``.
        extra: further tags, for example the model reference of an evaluation run.
    """
    tags = {
        f"{TAG_PREFIX}run_type": run_type,
        f"{TAG_PREFIX}model": config.model.name,
        f"{TAG_PREFIX}data_source": config.data.source,
        f"{TAG_PREFIX}version": medanomaly.__version__,
        f"{TAG_PREFIX}protocol": describe_protocol(config),
    }
    if config.data.source == "manifest" and config.data.path and Path(config.data.path).is_file():
        tags[f"{TAG_PREFIX}manifest_sha256"] = file_sha256(config.data.path)
    if extra:
        tags.update({key: str(value) for key, value in extra.items()})
    return tags


def describe_protocol(config: Config) -> str:
    """Return a short protocol label: the CIFAR-10 split rule or normal-only training."""
    data = config.data
    if data.source == "cifar10" and data.protocol == "one_vs_rest":
        return f"cifar10 one_vs_rest, normal class {data.normal_class}"
    if data.source == "cifar10":
        return f"cifar10 {data.protocol}, abnormal class {data.abnormal_class}"
    return "normal-only training, threshold on held-out normals"


def numeric_metrics(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Keep the numeric entries of ``metrics`` as floats with valid MLflow names.

    Tensors and numpy scalars are converted; strings, lists and ``None`` are dropped.
    """
    result: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                continue
            value = value.item()
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        name = _METRIC_NAME_INVALID.sub("_", f"{prefix}{key}")[:_MAX_KEY_LENGTH]
        result[name] = float(value)
    return result


@contextlib.contextmanager
def start_run(
    config: Config,
    run_type: str,
    tags: Mapping[str, str] | None = None,
    run_id: str | None = None,
) -> Iterator[Any]:
    """Start (or resume, with ``run_id``) an MLflow run in the configured experiment.

    The run ends as FINISHED when the block exits normally and as FAILED on an
    exception. Yields the ``mlflow.ActiveRun``.
    """
    import mlflow

    uri = use_tracking_store(config.tracking.tracking_uri)
    experiment_id = get_or_create_experiment(config.tracking.experiment, uri)
    all_tags = run_tags(config, run_type, tags)
    with mlflow.start_run(
        run_id=run_id,
        experiment_id=None if run_id else experiment_id,
        run_name=None if run_id else config.tracking.run_name,
        tags=all_tags,
    ) as run:
        logger.info("MLflow run %s in experiment '%s'", run.info.run_id, config.tracking.experiment)
        yield run


def log_config(config: Config) -> None:
    """Log the configuration as params and as ``config.yaml`` in the active run.

    A resumed run keeps its first value of any param that changed since, because
    MLflow params are immutable; the change is logged as a warning.
    """
    import mlflow

    run = mlflow.active_run()
    existing = mlflow.MlflowClient().get_run(run.info.run_id).data.params
    params = flatten_config(config.to_dict())
    changed = sorted(key for key, value in params.items() if key in existing and existing[key] != value)
    for key in changed:
        logger.warning(
            "Param %s changed from %s to %s; MLflow keeps the first value, see config.yaml",
            key,
            existing[key],
            params[key],
        )
    new = {key: value for key, value in params.items() if key not in existing}
    # log_params sends at most 100 params per call in MLflow 3.
    items = sorted(new.items())
    for start in range(0, len(items), 100):
        mlflow.log_params(dict(items[start : start + 100]))
    mlflow.log_text(config.to_yaml(), "config.yaml")


def log_metrics(metrics: Mapping[str, Any], step: int | None = None, prefix: str = "") -> None:
    """Log the numeric entries of ``metrics`` to the active run at ``step``."""
    import mlflow

    values = numeric_metrics(metrics, prefix)
    if values:
        mlflow.log_metrics(values, step=step)


def log_files(paths: Iterable[str | Path], artifact_path: str | None = None) -> None:
    """Copy local files into the active run's artifacts, under ``artifact_path``."""
    import mlflow

    for path in paths:
        mlflow.log_artifact(str(path), artifact_path=artifact_path)


class EpochLogger:
    """Trainer callback that logs each epoch's losses and validation figures with ``step=epoch``."""

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, Any], scorer: Any = None) -> None:
        """Log the numeric entries of ``metrics`` to the active run at step ``epoch``."""
        log_metrics(metrics, step=epoch)


# ---------------------------------------------------------------------------
# Model logging and registry


def scorer_signature(in_channels: int, image_size: int) -> Any:
    """Return the MLflow signature: (-1, C, H, W) float32 images in, (-1,) float32 scores out."""
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    inputs = Schema([TensorSpec(np.dtype(np.float32), (-1, in_channels, image_size, image_size))])
    outputs = Schema([TensorSpec(np.dtype(np.float32), (-1,))])
    return ModelSignature(inputs=inputs, outputs=outputs)


def synthetic_input_example(in_channels: int, image_size: int) -> np.ndarray:
    """Return two float32 images (2, C, H, W) in [0, 1] for the MLflow input example.

    The example is a smooth synthetic pattern rather than a real image, so that no
    patient pixels are stored beside the model.
    """
    axis = np.linspace(0.0, 1.0, image_size, dtype=np.float32)
    pattern = 0.5 * (axis[None, :] + axis[:, None])  # (H, W) diagonal ramp
    images = np.stack([pattern, 1.0 - pattern])  # (2, H, W)
    return np.repeat(images[:, None], in_channels, axis=1).astype(np.float32)


def scorer_metadata(scorer: Any) -> dict[str, Any]:
    """Return the scorer's preprocessing settings and threshold for the MLmodel file."""
    meta = dict(scorer.meta)
    keys = ("image_size", "in_channels", "preset", "resize_mode", "target_fpr")
    result = {key: meta[key] for key in keys if key in meta}
    result["model"] = scorer.model_name
    result["threshold"] = float(scorer.threshold)
    result["medanomaly_version"] = medanomaly.__version__
    return result


def log_scorer(scorer: torch.nn.Module, in_channels: int, image_size: int) -> str:
    """Log the scorer to the active run with a float32 signature and return its model URI.

    The scorer is stored as a pickled ``nn.Module`` so that loading it gives back
    the threshold, the meta and ``score_with_maps``. A CPU copy is logged, so the
    model loads on machines without CUDA; ``scorer`` itself stays where it is.
    """
    import mlflow

    scorer = copy.deepcopy(scorer).to("cpu").eval()
    # NOTE: MLflow 3.17 defaults to "pt2" (torch.export), which keeps only forward();
    # the CLI also needs score_with_maps, threshold and meta, so we store a pickle,
    # which must only be loaded from a trusted store.
    pickle_logger = logging.getLogger("mlflow.pytorch")
    level = pickle_logger.level
    pickle_logger.setLevel(logging.ERROR)
    try:
        info = mlflow.pytorch.log_model(
            scorer,
            name=MODEL_ARTIFACT_NAME,
            signature=scorer_signature(in_channels, image_size),
            input_example=synthetic_input_example(in_channels, image_size),
            serialization_format="pickle",
            # Listing requirements skips MLflow's inference, which imports the model in a
            # subprocess and takes tens of seconds.
            pip_requirements=[
                f"medanomaly=={medanomaly.__version__}",
                f"torch=={torch.__version__.split('+')[0]}",
                f"mlflow=={mlflow.__version__}",
            ],
            metadata=scorer_metadata(scorer),
        )
    finally:
        pickle_logger.setLevel(level)
    logger.info("Logged scorer as %s", info.model_uri)
    return info.model_uri


def register_scorer(
    model_uri: str,
    name: str,
    description: str,
    tags: Mapping[str, Any] | None = None,
) -> Any:
    """Register ``model_uri`` as a new version of ``name`` with a model card.

    Args:
        model_uri: the URI returned by :func:`log_scorer`.
        name: registered model name.
        description: the model card (Markdown), shown on the version page of the MLflow UI.
        tags: version tags, usually the headline metrics.

    Returns:
        The ``mlflow.entities.model_registry.ModelVersion``.
    """
    import mlflow

    version_tags = {key: str(value) for key, value in (tags or {}).items()}
    # register_model links the version to its logged model and run, which
    # create_model_version does not do for a models:/m-... source.
    version = mlflow.register_model(model_uri, name, tags=version_tags)
    client = mlflow.MlflowClient()
    version = client.update_model_version(name, version.version, description=description)
    if not client.get_registered_model(name).description:
        client.update_registered_model(
            name,
            description=(
                "medanomaly anomaly detector. Each version's description is its model "
                f"card. {INTENDED_USE}"
            ),
        )
    logger.info("Registered %s as models:/%s/%s", model_uri, name, version.version)
    return version


def build_model_card(
    config: Config,
    threshold: float,
    metrics: Mapping[str, Any] | None = None,
    data_counts: Mapping[str, Any] | None = None,
    run_id: str | None = None,
) -> str:
    """Write the Markdown model card stored as a registered version's description.

    Args:
        config: the resolved training configuration.
        threshold: the calibrated score threshold (score above it is flagged).
        metrics: test-split metrics, or ``None`` when the data had no test split.
        data_counts: image counts per split, either numbers or counts per label, for
            example ``{"train": {"normal": 900}, "test": {"normal": 90, "abnormal": 10}}``.
        run_id: the MLflow run that trained the model.
    """
    model, data, train = config.model, config.data, config.train
    lines = [
        f"# {model.name} anomaly detector",
        "",
        "## Intended use",
        INTENDED_USE,
        "",
        "## Model",
        f"- Family: {model.name}, input {model.in_channels} x {model.image_size} x "
        f"{model.image_size} (channels x height x width), values in [0, 1].",
        "- Higher score = less like the healthy training images.",
        f"- medanomaly {medanomaly.__version__}" + (f", training run {run_id}" if run_id else ""),
        "",
        "## Data",
        f"- Source: {data.source} ({data.path or 'no path'})",
        f"- Protocol: {describe_protocol(config)}",
    ]
    if data.preset:
        lines.append(f"- Intensity preset: {data.preset}, resize mode: {data.resize_mode}")
    if data.source == "manifest" and data.path and Path(data.path).is_file():
        lines.append(f"- Manifest SHA-256: {file_sha256(data.path)}")
    for split, counts in (data_counts or {}).items():
        lines.append(f"- {split}: {_format_counts(counts)}")
    lines += [
        "",
        "## Threshold",
        f"- {threshold:.6g}, set so that about {train.target_fpr:.0%} of held-out normal "
        "validation images score above it (target false-positive rate).",
        "",
        "## Test metrics",
    ]
    lines += _metrics_section(numeric_metrics(metrics or {}))
    lines += [
        "",
        "## Limits",
        "- Trained on normal images from one source only; scores from other scanners, "
        "protocols, intensity windows or resolutions are not calibrated.",
        "- Scores are per 2-D image or slice, without 3-D context.",
        "- A high score means unusual, not diseased: artefacts, positioning and normal "
        "anatomical variants also score high, and subtle lesions may not.",
    ]
    if data.source == "cifar10":
        lines.append("- CIFAR-10 contains natural images; these results say nothing about medical images.")
    else:
        lines.append("- The test metrics hold for the test split above only; confirm them on data from each site.")
    lines.append("- Not validated prospectively; not a medical device.")
    return "\n".join(lines) + "\n"


def _metrics_section(values: Mapping[str, float]) -> list[str]:
    """Format test metrics as a Markdown table plus a confusion-count line."""
    if not values:
        return ["No labelled test split was used, so sensitivity is unknown."]
    rows = ["| metric | value |", "| --- | --- |"]
    for key in ("auroc", "auprc", "f1", "sensitivity", "specificity", "precision", "accuracy"):
        if key in values:
            rows.append(f"| {key} | {values[key]:.4f} |")
    counts = [key for key in ("tp", "fp", "tn", "fn") if key in values]
    if counts:
        text = ", ".join(f"{key.upper()} {int(values[key])}" for key in counts)
        rows += ["", f"- At the threshold: {text}."]
    if "n_normal" in values:
        rows.append(
            f"- Test images: {int(values['n_normal'])} normal, {int(values.get('n_abnormal', 0))} abnormal."
        )
    return rows


def _format_counts(counts: Any) -> str:
    """Format ``{"normal": 90, "abnormal": 10}`` as ``90 normal, 10 abnormal``."""
    if isinstance(counts, Mapping):
        return ", ".join(f"{value} {label}" for label, value in counts.items()) or "0"
    return f"{counts} images"


# ---------------------------------------------------------------------------
# Loading


def is_mlflow_uri(reference: str) -> bool:
    """Return True for ``models:/``, ``runs:/`` and ``mlflow-artifacts:/`` references."""
    return reference.startswith(_MLFLOW_URI_PREFIXES)


def load_scorer(reference: str | Path, map_location: str | torch.device = "cpu") -> torch.nn.Module:
    """Load an AnomalyScorer from a local path or an MLflow URI.

    Args:
        reference: one of
            a checkpoint file written by the engine (``best.pt``, a saved scorer);
            a run folder that contains ``best.pt``;
            an MLflow model folder (contains ``MLmodel``);
            ``models:/NAME/VERSION``, ``models:/NAME@ALIAS``, ``models:/NAME/latest``
            or ``runs:/RUN_ID/model``, read from the store that
            :func:`resolve_tracking_uri` selects.
        map_location: device for the loaded tensors.

    Returns:
        The scorer in eval mode.

    Raises:
        FileNotFoundError: nothing exists at a local path.
        ValueError: the reference exists but holds no medanomaly scorer, or the MLflow
            store has no such model.
    """
    text = str(reference)
    if is_mlflow_uri(text):
        scorer = _load_mlflow_model(text, map_location)
    else:
        scorer = _load_local(Path(text).expanduser(), map_location)
    _check_scorer(scorer, text)
    return scorer.eval()


def _load_mlflow_model(uri: str, map_location: Any) -> Any:
    import mlflow
    from mlflow.exceptions import MlflowException

    # MLflow would create an empty database at a missing sqlite path, so check first.
    database = sqlite_database(resolve_tracking_uri())
    if database is not None and not database.is_file():
        raise ValueError(
            f"Could not load model '{uri}': there is no MLflow store at {database}. "
            "Run the command from the folder that holds mlflow.db, or set "
            "MLFLOW_TRACKING_URI to the store that holds the model."
        )
    store = use_tracking_store()
    try:
        return mlflow.pytorch.load_model(uri, map_location=map_location)
    except MlflowException as err:
        reason = err.message.rstrip(".")
        raise ValueError(
            f"Could not load model '{uri}' from MLflow store {store}: {reason}. "
            "Check the name, version or alias on the Models page of the MLflow UI, or set "
            "MLFLOW_TRACKING_URI to the store that holds the model."
        ) from err


def _load_local(path: Path, map_location: Any) -> Any:
    import mlflow

    if path.is_dir() and (path / "MLmodel").is_file():
        return mlflow.pytorch.load_model(str(path), map_location=map_location)
    if path.is_dir() and (path / "best.pt").is_file():
        path = path / "best.pt"
    if path.is_file():
        return _load_checkpoint(path, map_location)
    tried = (
        "a checkpoint file (best.pt), a run folder containing best.pt, an MLflow model "
        "folder containing MLmodel, and URIs models:/NAME/VERSION, models:/NAME@ALIAS, "
        "models:/NAME/latest, runs:/RUN_ID/model"
    )
    if path.is_dir():
        raise ValueError(f"No model found in folder {path}. Accepted references: {tried}.")
    raise FileNotFoundError(f"Model not found: {path} does not exist. Accepted references: {tried}.")


def _load_checkpoint(path: Path, map_location: Any) -> Any:
    from medanomaly.engine.scorer import AnomalyScorer

    return AnomalyScorer.load(path, map_location=map_location)


def _check_scorer(model: Any, reference: str) -> None:
    missing = [name for name in ("threshold", "meta", "score_with_maps") if not hasattr(model, name)]
    if missing:
        raise ValueError(
            f"'{reference}' contains a {type(model).__name__}, not a medanomaly AnomalyScorer "
            f"(missing {', '.join(missing)}). Use a model logged by `medanomaly train`."
        )
    threshold = float(model.threshold)
    if not math.isfinite(threshold):
        raise ValueError(f"'{reference}' has no calibrated threshold ({threshold}); retrain it.")
