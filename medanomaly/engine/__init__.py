"""Training, scoring, metrics and checkpoints shared by every model.

>>> trainer = Trainer(config)
>>> result = trainer.fit(model, make_train_loader(train, 64), make_eval_loader(val, 64))
>>> scores = score_loader(result.scorer, make_eval_loader(test, 64))
>>> compute_metrics(scores.scores, scores.labels, result.scorer.threshold)
"""

from medanomaly.engine.checkpoint import (
    BEST_CHECKPOINT,
    LAST_CHECKPOINT,
    atomic_save,
    atomic_write_text,
    load_checkpoint,
)
from medanomaly.engine.device import deterministic_mode, resolve_device, seed_everything
from medanomaly.engine.metrics import calibrate_threshold, compute_metrics, score_statistics
from medanomaly.engine.scorer import AnomalyScorer
from medanomaly.engine.scoring import (
    NonFiniteScoreError,
    ScoreResult,
    evaluate_loader,
    score_loader,
)
from medanomaly.engine.steps import LOSS_NAMES, get_family
from medanomaly.engine.trainer import (
    SELECTION_METRICS,
    Callback,
    FitResult,
    NonFiniteLossError,
    Trainer,
    build_model,
    make_eval_loader,
    make_loader,
    make_run_dir,
    make_train_loader,
)

__all__ = [
    "BEST_CHECKPOINT",
    "LAST_CHECKPOINT",
    "LOSS_NAMES",
    "SELECTION_METRICS",
    "AnomalyScorer",
    "Callback",
    "FitResult",
    "NonFiniteLossError",
    "NonFiniteScoreError",
    "ScoreResult",
    "Trainer",
    "atomic_save",
    "atomic_write_text",
    "build_model",
    "calibrate_threshold",
    "compute_metrics",
    "deterministic_mode",
    "evaluate_loader",
    "get_family",
    "load_checkpoint",
    "make_eval_loader",
    "make_loader",
    "make_run_dir",
    "make_train_loader",
    "resolve_device",
    "score_loader",
    "score_statistics",
    "seed_everything",
]
