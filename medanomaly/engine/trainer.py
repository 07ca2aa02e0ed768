"""The adversarial trainer shared by every model, and data loader helpers.

One epoch trains on the normal training images, then scores the held-out
normal validation images with the current weights. Validation gives the
threshold and the figure that selects the checkpoint; test labels play no
part.

Checkpoint selection: the epoch with the lowest mean validation
reconstruction error (``val_rec_error``, mean squared pixel error between
normal images and their reconstructions) is kept, earlier epochs winning
ties. Unlike the mean score, this figure is on the same scale at every
epoch, because the discriminator features in the Skip-GANomaly score and
the latent codes in the GANomaly score drift as training goes on.
``Trainer(selection_metric="val_score_mean")`` selects on the mean
validation score instead.

NOTE: without abnormal images no label-free figure is known to track
detection quality. A generator that reconstructs everything well also has a
low validation error, so the selected epoch is not always the best detector.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import random
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from medanomaly import __version__
from medanomaly.config import Config
from medanomaly.engine.checkpoint import (
    BEST_CHECKPOINT,
    CONFIG_FILE,
    HISTORY_FILE,
    LAST_CHECKPOINT,
    atomic_save,
    atomic_write_text,
    load_checkpoint,
    training_state,
)
from medanomaly.engine.device import (
    amp_enabled,
    deterministic_mode,
    get_rng_states,
    make_grad_scaler,
    memory_format,
    resolve_device,
    seed_everything,
    set_rng_states,
)
from medanomaly.engine.metrics import calibrate_threshold, score_statistics
from medanomaly.engine.scorer import AnomalyScorer, to_plain
from medanomaly.engine.scoring import NonFiniteScoreError, ScoreResult, score_loader
from medanomaly.engine.steps import LOSS_NAMES, Family, get_family, make_optimizers
from medanomaly.networks import create_model

logger = logging.getLogger(__name__)

SELECTION_METRICS = ("val_rec_error", "val_score_mean")
THRESHOLD_RULE = "quantile of validation normal scores at 1 - target_fpr (linear interpolation)"


class NonFiniteLossError(RuntimeError):
    """A training loss became NaN or infinite.

    Attributes:
        epoch: 1-based epoch.
        step: 1-based step within the epoch.
        loss_name: name of the first non-finite loss (see ``steps.LOSS_NAMES``).
        value: the loss value.
    """

    def __init__(self, epoch: int, step: int, loss_name: str, value: float) -> None:
        self.epoch = epoch
        self.step = step
        self.loss_name = loss_name
        self.value = value
        super().__init__(
            f"Non-finite {loss_name} ({value}) at epoch {epoch}, step {step}. Check the "
            "training images for NaN values, lower train.lr, or set train.amp to false."
        )


class Callback:
    """Hooks that the trainer calls; override the ones you need.

    Any object with these methods works; missing methods are skipped.
    """

    def on_epoch_end(self, epoch: int, metrics: dict[str, float], scorer: AnomalyScorer) -> None:
        """Run after an epoch is complete and ``last.pt`` is written.

        Args:
            epoch: 1-based epoch.
            metrics: the epoch's mean losses and validation figures.
            scorer: scorer of this epoch's weights, a copy that the trainer
                does not use again.
        """

    def on_fit_end(self, result: FitResult) -> None:
        """Run once training has finished."""


@dataclass
class FitResult:
    """Outcome of :meth:`Trainer.fit`.

    Attributes:
        scorer: scorer of the selected epoch (also saved as ``best.pt``).
        history: one dictionary per epoch: ``epoch`` and that epoch's metrics.
        best_epoch: 1-based selected epoch.
        run_dir: folder with ``last.pt``, ``best.pt``, ``config.yaml`` and ``history.json``.
    """

    scorer: AnomalyScorer
    history: list[dict[str, float]]
    best_epoch: int
    run_dir: Path


@dataclass
class _BestEpoch:
    epoch: int = 0
    value: float = math.inf
    scorer: AnomalyScorer | None = None
    payload: dict[str, Any] | None = field(default=None, repr=False)


@dataclass
class _Run:
    """Objects of one fit that the epoch helpers share."""

    model: nn.Module
    family: type[Family]
    model_kwargs: dict[str, Any]
    run_dir: Path
    device: torch.device
    use_amp: bool
    layout: torch.memory_format
    loader_generator: torch.Generator | None
    optimizer_g: torch.optim.Optimizer | None = None
    optimizer_d: torch.optim.Optimizer | None = None
    scaler: torch.amp.GradScaler | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    best: _BestEpoch = field(default_factory=_BestEpoch)


# ----------------------------------------------------------------------
# Data loaders
# ----------------------------------------------------------------------


def _seed_worker(worker_id: int) -> None:
    # torch seeds each worker from the loader's generator, and NumPy and random follow it.
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    num_workers: int = 0,
    drop_last: bool = False,
    pin_memory: bool = False,
) -> DataLoader:
    """Create a DataLoader whose shuffling and worker seeds follow ``seed``.

    The loader's ``generator`` is seeded, so the same seed gives the same
    order of batches. The trainer saves and restores its state on resume.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    generator = torch.Generator()
    generator.manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        drop_last=drop_last,
        pin_memory=pin_memory,
        generator=generator,
        worker_init_fn=_seed_worker if num_workers > 0 else None,
        # Workers restart each epoch and draw their seeds from the generator
        # then, so a resumed run seeds them as the uninterrupted run did.
        persistent_workers=False,
    )


def make_train_loader(
    dataset: Dataset, batch_size: int, seed: int = 0, num_workers: int = 0, pin_memory: bool = False
) -> DataLoader:
    """Create the shuffled training loader.

    The last incomplete batch is dropped only when the dataset is larger than
    one batch. A batch of one image would break training-mode batch norm,
    and a dataset smaller than a batch still needs one step per epoch.
    """
    drop_last = len(dataset) > batch_size
    return make_loader(dataset, batch_size, True, seed, num_workers, drop_last, pin_memory)


def make_eval_loader(
    dataset: Dataset, batch_size: int, num_workers: int = 0, pin_memory: bool = False
) -> DataLoader:
    """Create an unshuffled loader that keeps every image, for validation and scoring."""
    return make_loader(dataset, batch_size, False, 0, num_workers, False, pin_memory)


def build_model(config: Config) -> nn.Module:
    """Build the networks of ``config.model`` with initial weights drawn from ``config.train.seed``.

    The weights come from torch's global generator, so it is seeded first and
    the same seed gives the same run.
    """
    seed_everything(config.train.seed)
    model_config = config.model
    return create_model(
        model_config.name,
        in_channels=model_config.in_channels,
        image_size=model_config.image_size,
        generator=model_config.generator,
        discriminator=model_config.discriminator,
    )


def make_run_dir(output_dir: str | Path, model_name: str, run_id: str | None = None) -> Path:
    """Return ``output_dir / run_id``; the default run id is the model name and the local time."""
    run_id = run_id or f"{model_name}-{datetime.now():%Y%m%d-%H%M%S}"
    return Path(output_dir) / run_id


# ----------------------------------------------------------------------
# Trainer
# ----------------------------------------------------------------------


def _check_config(config: Config) -> None:
    train = config.train
    problems = []
    if not isinstance(train.epochs, int) or train.epochs < 1:
        problems.append(f"train.epochs must be a positive integer, got {train.epochs!r}")
    if not train.lr > 0:
        problems.append(f"train.lr must be positive, got {train.lr!r}")
    if len(train.betas) != 2 or not all(0.0 <= beta < 1.0 for beta in train.betas):
        problems.append(f"train.betas must be two numbers in [0, 1), got {train.betas!r}")
    for name in ("w_adv", "w_rec", "w_lat"):
        value = getattr(train, name)
        if not (math.isfinite(value) and value >= 0):
            problems.append(f"train.{name} must be a finite number >= 0, got {value!r}")
    if not 0.0 <= train.score_alpha <= 1.0:
        problems.append(f"train.score_alpha must be in [0, 1], got {train.score_alpha!r}")
    if not 0.0 < train.target_fpr < 1.0:
        problems.append(f"train.target_fpr must be in (0, 1), got {train.target_fpr!r}")
    if problems:
        raise ValueError("Invalid training configuration: " + "; ".join(problems) + ".")


def _batch_images(batch: Any) -> torch.Tensor:
    if isinstance(batch, dict):
        return batch["image"]
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0]
    raise TypeError(
        f"Unsupported batch type {type(batch).__name__}; expected a dict with 'image', "
        "a tensor, or an (image, label) pair."
    )


def _dataset_size(loader: Iterable) -> int | None:
    dataset = getattr(loader, "dataset", None)
    try:
        return len(dataset) if dataset is not None else None
    except TypeError:
        return None


def _progress_enabled() -> bool:
    return sys.stderr.isatty()


class Trainer:
    """Adversarial trainer for every model in ``medanomaly.networks``.

    Args:
        config: resolved configuration; ``config.train`` drives training and
            ``config.model`` must describe the model passed to :meth:`fit`.
        callbacks: objects with optional ``on_epoch_end(epoch, metrics, scorer)``
            and ``on_fit_end(result)`` methods, called in order.
        selection_metric: validation figure whose lowest value selects the kept
            epoch, one of :data:`SELECTION_METRICS`.

    Raises:
        ValueError: invalid training settings or selection metric.
    """

    def __init__(
        self,
        config: Config,
        callbacks: Sequence[Any] = (),
        selection_metric: str = "val_rec_error",
    ) -> None:
        _check_config(config)
        if selection_metric not in SELECTION_METRICS:
            raise ValueError(
                f"selection_metric must be one of {SELECTION_METRICS}, got {selection_metric!r}."
            )
        self.config = config
        self.callbacks = list(callbacks)
        self.selection_metric = selection_metric
        self._warned_small_validation = False

    # ------------------------------------------------------------------
    # Public entry point
    # ------------------------------------------------------------------

    def fit(
        self,
        model: nn.Module,
        train_loader: Iterable,
        val_loader: Iterable,
        run_dir: str | Path | None = None,
        resume: bool = False,
    ) -> FitResult:
        """Train ``model`` and keep the scorer of the best validation epoch.

        Args:
            model: AnomalyGAN that ``medanomaly.networks.create_model`` built
                from ``config.model``.
            train_loader: batches of normal training images (see :func:`make_train_loader`).
            val_loader: held-out normal images, unshuffled (see :func:`make_eval_loader`).
            run_dir: folder for checkpoints; default ``config.train.output_dir``
                plus a new run id. Required with ``resume``.
            resume: continue from ``run_dir/last.pt`` after its last completed epoch.

        Raises:
            ValueError: model and config disagree, the validation set contains an
                abnormal image, or a loader is empty.
            FileExistsError: ``run_dir`` already contains a run and ``resume`` is False.
            FileNotFoundError: ``resume`` without ``run_dir/last.pt``.
            NonFiniteLossError: a loss became NaN or infinite.
            NonFiniteScoreError: a validation score became NaN or infinite.
        """
        config = self.config
        self._warned_small_validation = False
        device = resolve_device(config.train.device)
        run = _Run(
            model=model,
            family=get_family(model.name),
            model_kwargs=self._check_model(model),
            run_dir=self._prepare_run_dir(model, run_dir, resume),
            device=device,
            # NOTE: the tests run on the CPU, so training on CUDA has not run
            # there. The float16 step itself is tested with CPU autocast.
            use_amp=amp_enabled(device, config.train.amp),
            layout=memory_format(config.train.channels_last),
            loader_generator=getattr(train_loader, "generator", None),
        )

        with deterministic_mode(config.train.deterministic, device):
            if not resume:
                seed_everything(config.train.seed)
            model.to(device=device, memory_format=run.layout)
            run.optimizer_g, run.optimizer_d = make_optimizers(model, config.train)
            run.scaler = make_grad_scaler(device, run.use_amp)
            start_epoch = self._restore(run) if resume else 1
            atomic_write_text(config.to_yaml(), run.run_dir / CONFIG_FILE)
            self._log_start(run, train_loader, val_loader)

            for epoch in range(start_epoch, config.train.epochs + 1):
                metrics, scorer = self._run_epoch(run, epoch, train_loader, val_loader)
                # Callbacks must not shift the random numbers of later epochs,
                # or a resumed run would differ from an uninterrupted one.
                rng_after_epoch = get_rng_states(run.loader_generator)
                for callback in self.callbacks:
                    hook = getattr(callback, "on_epoch_end", None)
                    if hook is not None:
                        hook(epoch, metrics, scorer)
                set_rng_states(rng_after_epoch, run.loader_generator)

        best = run.best
        if best.scorer is None:
            if best.payload is None:
                raise RuntimeError(
                    f"{run.run_dir / LAST_CHECKPOINT} has no selected epoch to return."
                )
            best.scorer = AnomalyScorer.from_payload(best.payload, map_location=device)
        result = FitResult(best.scorer, run.history, best.epoch, run.run_dir)
        logger.info(
            "Selected epoch %d (%s %.6g); scorer saved to %s",
            best.epoch,
            self.selection_metric,
            best.value,
            run.run_dir / BEST_CHECKPOINT,
        )
        for callback in self.callbacks:
            hook = getattr(callback, "on_fit_end", None)
            if hook is not None:
                hook(result)
        return result

    def _run_epoch(
        self, run: _Run, epoch: int, train_loader: Iterable, val_loader: Iterable
    ) -> tuple[dict[str, float], AnomalyScorer]:
        """Train and validate one epoch, update the selection and write the checkpoints."""
        started = time.perf_counter()
        metrics = self._train_epoch(run, epoch, train_loader)
        run.optimizer_g.zero_grad(set_to_none=True)
        run.optimizer_d.zero_grad(set_to_none=True)

        scorer, validation = self._validate(run, epoch, val_loader)
        metrics.update(validation)
        metrics["epoch_seconds"] = time.perf_counter() - started

        value = metrics[self.selection_metric]
        if value < run.best.value:
            run.best = _BestEpoch(epoch, value, scorer, scorer.to_payload())
            scorer.save(run.run_dir / BEST_CHECKPOINT)
        metrics["best_epoch"] = run.best.epoch
        run.history.append({"epoch": epoch, **metrics})

        state = training_state(
            epoch=epoch,
            model=run.model,
            optimizer_g=run.optimizer_g,
            optimizer_d=run.optimizer_d,
            scaler=run.scaler,
            rng=get_rng_states(run.loader_generator),
            history=run.history,
            best={"epoch": run.best.epoch, "value": run.best.value, "scorer": run.best.payload},
            config=self.config.to_dict(),
        )
        atomic_save(state, run.run_dir / LAST_CHECKPOINT)
        atomic_write_text(json.dumps(run.history, indent=2), run.run_dir / HISTORY_FILE)
        self._log_epoch(epoch, metrics)
        return metrics, scorer

    # ------------------------------------------------------------------
    # Set-up
    # ------------------------------------------------------------------

    def _check_model(self, model: nn.Module) -> dict[str, Any]:
        """Check that ``model`` is what ``config.model`` builds; return its create_model kwargs."""
        model_config = self.config.model
        recorded = (model.name, model.in_channels, model.image_size)
        expected = (model_config.name, model_config.in_channels, model_config.image_size)
        if recorded != expected:
            raise ValueError(
                f"Model (name, in_channels, image_size) = {recorded} differs from the config's "
                f"model section {expected}; build the model from config.model."
            )
        kwargs = {
            "in_channels": model_config.in_channels,
            "image_size": model_config.image_size,
            "generator": dict(model_config.generator),
            "discriminator": dict(model_config.discriminator),
        }
        # Build the config's model without memory to compare weight shapes: a
        # mismatch would otherwise surface only when best.pt is loaded.
        with torch.device("meta"):
            reference = create_model(model_config.name, **kwargs)
        expected_shapes = {key: tuple(value.shape) for key, value in reference.state_dict().items()}
        actual_shapes = {key: tuple(value.shape) for key, value in model.state_dict().items()}
        if expected_shapes != actual_shapes:
            raise ValueError(
                "The model's weights differ from those that config.model.generator and "
                "config.model.discriminator build; a saved scorer could not be loaded. "
                "Build the model with create_model(**config.model)."
            )
        return kwargs

    def _prepare_run_dir(self, model: nn.Module, run_dir: str | Path | None, resume: bool) -> Path:
        if run_dir is None:
            if resume:
                raise ValueError("resume=True needs the run_dir of the run to continue.")
            run_dir = make_run_dir(self.config.train.output_dir, model.name)
        run_dir = Path(run_dir)
        last = run_dir / LAST_CHECKPOINT
        if resume and not last.is_file():
            raise FileNotFoundError(f"Cannot resume: {last} not found.")
        if not resume and last.exists():
            raise FileExistsError(
                f"{run_dir} already contains a run ({LAST_CHECKPOINT}); resume it or choose "
                "another run folder."
            )
        run_dir.mkdir(parents=True, exist_ok=True)
        return run_dir

    def _restore(self, run: _Run) -> int:
        """Load ``last.pt`` into the run's objects and return the next epoch."""
        path = run.run_dir / LAST_CHECKPOINT
        state = load_checkpoint(path, map_location="cpu")
        if state.get("model_name") != run.model.name:
            raise ValueError(
                f"{path} was written for model {state.get('model_name')!r}, not {run.model.name!r}."
            )
        self._warn_config_changes(path, state.get("config", {}))

        run.model.load_state_dict(state["model"])
        run.optimizer_g.load_state_dict(state["optimizer_g"])
        run.optimizer_d.load_state_dict(state["optimizer_d"])
        if state["scaler"]:
            run.scaler.load_state_dict(state["scaler"])
        set_rng_states(state["rng"], run.loader_generator)

        run.history = list(state["history"])
        stored = state.get("best") or {}
        run.best = _BestEpoch(
            epoch=stored.get("epoch", 0),
            value=stored.get("value", math.inf),
            payload=stored.get("scorer"),
        )
        if run.best.payload is not None:
            run.best.scorer = AnomalyScorer.from_payload(
                run.best.payload, map_location=run.device, source=str(path)
            )
        logger.info("Resuming %s from %s after epoch %d", run.model.name, path, state["epoch"])
        return state["epoch"] + 1

    def _warn_config_changes(self, path: Path, stored: dict[str, Any]) -> None:
        current = self.config.to_dict()
        changed = []
        for section, values in current.items():
            for key, value in values.items():
                if section == "train" and key == "epochs":
                    continue
                old = stored.get(section, {}).get(key)
                if to_plain(old) != to_plain(value):
                    changed.append(f"{section}.{key}: {old!r} -> {value!r}")
        if changed:
            logger.warning("Config differs from the run in %s: %s", path, "; ".join(changed))

    def _log_start(self, run: _Run, train_loader: Iterable, val_loader: Iterable) -> None:
        parameters = sum(parameter.numel() for parameter in run.model.parameters())
        train = self.config.train
        logger.info(
            "Training %s (%d parameters) on %s: amp=%s, channels_last=%s, deterministic=%s, "
            "seed=%d",
            run.model.name,
            parameters,
            run.device,
            run.use_amp,
            train.channels_last,
            train.deterministic,
            train.seed,
        )
        logger.info(
            "Split sizes: %s training and %s validation images; %s steps per epoch; run folder %s",
            _dataset_size(train_loader),
            _dataset_size(val_loader),
            len(train_loader) if hasattr(train_loader, "__len__") else "unknown",
            run.run_dir,
        )

    # ------------------------------------------------------------------
    # One epoch
    # ------------------------------------------------------------------

    def _train_epoch(self, run: _Run, epoch: int, loader: Iterable) -> dict[str, float]:
        """Train one epoch; return the mean of each loss and the count of D re-initialisations."""
        run.model.train()
        totals = torch.zeros(len(LOSS_NAMES), device=run.device)
        steps = 0
        reinitialisations = 0
        bar = tqdm(
            loader,
            desc=f"epoch {epoch}/{self.config.train.epochs}",
            leave=False,
            disable=not _progress_enabled(),
        )
        for step, batch in enumerate(bar, start=1):
            x = _batch_images(batch).to(
                device=run.device, dtype=torch.float32, memory_format=run.layout, non_blocking=True
            )
            output = run.family.train_step(
                run.model,
                x,
                self.config.train,
                run.optimizer_g,
                run.optimizer_d,
                run.scaler,
                run.use_amp,
            )
            losses = torch.stack([output.losses[name] for name in LOSS_NAMES])
            self._check_finite(losses, epoch, step)
            totals += losses
            steps += 1
            if output.d_reinitialised:
                reinitialisations += 1
                logger.debug("Epoch %d step %d: discriminator re-initialised", epoch, step)
            if not bar.disable:
                bar.set_postfix(loss_g=f"{losses[0]:.4f}", loss_d=f"{losses[4]:.4f}")
        if steps == 0:
            raise ValueError("The training loader yielded no batches; it needs at least one image.")

        means = (totals / steps).tolist()
        metrics = dict(zip(LOSS_NAMES, means))
        metrics["d_reinit"] = reinitialisations
        if reinitialisations:
            logger.info(
                "Epoch %d: discriminator re-initialised %d time(s) after its loss fell below 1e-5",
                epoch,
                reinitialisations,
            )
        return metrics

    @staticmethod
    def _check_finite(losses: torch.Tensor, epoch: int, step: int) -> None:
        finite = torch.isfinite(losses)
        if bool(finite.all()):
            return
        index = int((~finite).nonzero()[0])
        raise NonFiniteLossError(epoch, step, LOSS_NAMES[index], float(losses[index]))

    def _validate(
        self, run: _Run, epoch: int, val_loader: Iterable
    ) -> tuple[AnomalyScorer, dict[str, float]]:
        """Score the validation normals with a copy of the current weights.

        Returns:
            The epoch's scorer, threshold calibrated, and its validation figures.
        """
        train = self.config.train
        # A copy, so that callbacks and the kept best epoch are unaffected by later training.
        scorer = AnomalyScorer(
            copy.deepcopy(run.model),
            threshold=0.0,  # replaced below once the validation scores exist
            model_kwargs=run.model_kwargs,
            score_alpha=train.score_alpha,
            channels_last=train.channels_last,
        )
        try:
            result = score_loader(scorer, val_loader, description=f"validation {epoch}")
        except NonFiniteScoreError as err:
            raise NonFiniteScoreError(f"Epoch {epoch} validation: {err}") from err
        self._check_validation_labels(result)

        # The size warning would repeat every epoch, so it is logged once per fit.
        warn_small = not self._warned_small_validation
        self._warned_small_validation = True
        threshold = calibrate_threshold(result.scores, train.target_fpr, warn_small=warn_small)
        stats = score_statistics(result.scores)
        validation = {
            "val_rec_error": float(result.pixel_errors.mean()),
            "val_score_mean": stats["mean"],
            "val_score_std": stats["std"],
            "threshold": threshold,
        }
        scorer.threshold = threshold
        scorer.meta = to_plain(self._scorer_meta(epoch, stats, validation))
        return scorer, validation

    @staticmethod
    def _check_validation_labels(result: ScoreResult) -> None:
        abnormal = np.flatnonzero(result.labels == 1)
        if abnormal.size:
            first = abnormal[0]
            raise ValueError(
                f"The validation set contains {abnormal.size} abnormal image(s), e.g. "
                f"{result.paths[first]} [index {result.indices[first]}]. Validation selects "
                "the checkpoint and sets the threshold, so it must contain normal images only."
            )

    def _scorer_meta(
        self, epoch: int, stats: dict[str, float], validation: dict[str, float]
    ) -> dict[str, Any]:
        config = self.config
        return {
            "model_name": config.model.name,
            "image_size": config.model.image_size,
            "in_channels": config.model.in_channels,
            "preset": config.data.preset,
            "resize_mode": config.data.resize_mode,
            "target_fpr": config.train.target_fpr,
            "threshold_rule": THRESHOLD_RULE,
            "score_stats": stats,
            "epoch": epoch,
            "selection_metric": self.selection_metric,
            "selection_value": validation[self.selection_metric],
            "val_rec_error": validation["val_rec_error"],
            "config": config.to_dict(),
            "medanomaly_version": __version__,
            "torch_version": torch.__version__,
        }

    def _log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        logger.info(
            "Epoch %d/%d: loss_g %.4f (adv %.4f, rec %.4f, lat %.4f), loss_d %.4f, "
            "val_rec_error %.6g, val_score_mean %.6g, threshold %.6g, best epoch %d (%.1f s)",
            epoch,
            self.config.train.epochs,
            metrics["loss_g"],
            metrics["loss_g_adv"],
            metrics["loss_g_rec"],
            metrics["loss_g_lat"],
            metrics["loss_d"],
            metrics["val_rec_error"],
            metrics["val_score_mean"],
            metrics["threshold"],
            metrics["best_epoch"],
            metrics["epoch_seconds"],
        )
