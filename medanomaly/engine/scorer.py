"""AnomalyScorer: a trained model together with everything needed to score images."""

from __future__ import annotations

import copy
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medanomaly.engine.checkpoint import atomic_save, load_checkpoint
from medanomaly.engine.device import memory_format
from medanomaly.engine.steps import ScoreOutput, get_family
from medanomaly.networks import create_model
from medanomaly.networks.blocks import fold_batch_norm

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
_PAYLOAD_KEYS = ("format_version", "model_name", "model_kwargs", "state_dict", "threshold", "meta")


class AnomalyScorer(nn.Module):
    """Trained AnomalyGAN, its calibrated threshold and the facts needed to score new images.

    Scores are per image, and higher means more anomalous. An image is flagged
    abnormal when its score is greater than :attr:`threshold`. The networks
    always run in eval mode, so a score does not depend on the other images
    in the batch.

    The module pickles as a whole (``torch.save(scorer)``,
    ``mlflow.pytorch.log_model``). :meth:`save` and :meth:`load` use a plain
    payload of tensors and builtins instead, which loads with
    ``weights_only=True``.

    Args:
        model: trained AnomalyGAN (``.name``, ``.generator``, ``.discriminator``).
            The scorer freezes its weights and keeps it in eval mode, so pass
            a copy of a model that is still training.
        threshold: score above which an image is flagged abnormal.
        meta: plain-type facts: image size, channels, intensity preset, resize
            mode, target false-positive rate, validation score statistics,
            resolved config and so on.
        model_kwargs: keyword arguments that rebuild ``model`` with
            ``medanomaly.networks.create_model(model.name, **model_kwargs)``.
        score_alpha: weight of the pixel error in the score of the
            Skip-GANomaly family; GANomaly ignores it.
        channels_last: store weights and run inputs in channels-last memory format.
    """

    def __init__(
        self,
        model: nn.Module,
        threshold: float,
        meta: dict[str, Any] | None = None,
        model_kwargs: dict[str, Any] | None = None,
        score_alpha: float = 0.9,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        if not 0.0 <= score_alpha <= 1.0:
            raise ValueError(f"score_alpha must be in [0, 1], got {score_alpha}.")
        if not math.isfinite(threshold):
            raise ValueError(f"threshold must be a finite number, got {threshold}.")
        get_family(model.name)  # fail early for a model the engine cannot score
        self.model = model
        self.model_name = model.name
        self.threshold = float(threshold)
        self.score_alpha = float(score_alpha)
        self.model_kwargs = to_plain(model_kwargs or default_model_kwargs(model))
        self.meta = to_plain(meta or {})
        self.channels_last = bool(channels_last)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.requires_grad_(False)
        self.eval()

    # ------------------------------------------------------------------
    # Properties
    # ------------------------------------------------------------------

    @property
    def in_channels(self) -> int:
        """Number of image channels the model takes."""
        return int(self.model_kwargs["in_channels"])

    @property
    def image_shape(self) -> tuple[int, int]:
        """Height and width the model takes."""
        size = self.model_kwargs["image_size"]
        if isinstance(size, (list, tuple)):
            return int(size[0]), int(size[1])
        return int(size), int(size)

    @property
    def device(self) -> torch.device:
        """Device of the model's weights."""
        return next(self.model.parameters()).device

    def train(self, mode: bool = True) -> AnomalyScorer:
        """Keep the networks in eval mode whatever ``mode`` is.

        A scorer only scores. Training-mode batch norm would make each score
        depend on the other images in its batch.
        """
        return super().train(False)

    # ------------------------------------------------------------------
    # Scoring
    # ------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Score a batch of images.

        Args:
            x: (B, C, H, W) float images in [0, 1], C and H, W as the model
                was trained on. They are moved to the scorer's device.

        Returns:
            (B,) float32 scores on the scorer's device.
        """
        return self.score_with_maps(x)[0]

    def score_with_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Score a batch and return the residual maps and reconstructions.

        Args:
            x: (B, C, H, W) float images in [0, 1].

        Returns:
            ``(scores (B,), residual (B, 1, H, W), reconstruction (B, C, H, W))``;
            the residual is the squared error averaged over channels.
        """
        self.model.eval()  # in case a caller switched the wrapped model to training
        with torch.inference_mode():
            output = self.score_batch(self.prepare(x))
        return output.scores, output.residual, output.reconstruction

    def score_image(self, image: torch.Tensor) -> float:
        """Score one (C, H, W) image."""
        if image.ndim != 3:
            raise ValueError(f"Expected one (C, H, W) image, got shape {tuple(image.shape)}.")
        return float(self.forward(image.unsqueeze(0))[0])

    def is_anomalous(self, scores: torch.Tensor) -> torch.Tensor:
        """Return a boolean mask of scores greater than the threshold."""
        return scores > self.threshold

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Check a (B, C, H, W) batch and move it to the scorer's device, dtype and layout.

        Raises:
            ValueError: wrong number of dimensions, channels or spatial size.
        """
        if x.ndim != 4:
            raise ValueError(
                f"Expected a (B, C, H, W) batch, got shape {tuple(x.shape)}; "
                "use score_image for a single (C, H, W) image."
            )
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"Model {self.model_name} expects {self.in_channels} channel(s), got "
                f"{x.shape[1]}; convert the images to the model's channel count."
            )
        if tuple(x.shape[2:]) != self.image_shape:
            height, width = self.image_shape
            raise ValueError(
                f"Model {self.model_name} expects {height}x{width} images, got "
                f"{x.shape[2]}x{x.shape[3]}; resize or pad them first."
            )
        return x.to(
            device=self.device,
            dtype=torch.float32,
            memory_format=memory_format(self.channels_last),
        )

    def score_batch(self, x: torch.Tensor) -> ScoreOutput:
        """Score a prepared batch with the networks in whatever mode they are in.

        Most callers want :meth:`forward` or :meth:`score_with_maps`, which
        force eval mode and turn off autograd.
        """
        return get_family(self.model_name).score(self.inference_model(), x, self.score_alpha)

    def inference_model(self) -> nn.Module:
        """Return the model to score with: a copy with batch norm folded into the convolutions.

        The copy (see :func:`medanomaly.networks.blocks.fold_batch_norm`)
        computes the same scores up to float rounding. It made scoring
        Skip-GANomaly++ 1.08x faster at 3x32x32 and 1.15x faster at
        1x128x128 on a CPU. It is rebuilt whenever a weight or running
        statistic of :attr:`model` changes, and it is never saved or pickled.
        While any layer is in training mode, :attr:`model` itself is
        returned, because folding needs running statistics. The
        ``batchnorm_mode="train"`` copy that ``score_loader`` scores with is
        such a case.
        """
        if any(module.training for module in self.model.modules()):
            return self.model
        key = _weights_key(self.model)
        if key is None:
            return self.model
        cached = self.__dict__.get("_folded")
        if cached is None or cached[0] != key:
            # Outside inference mode, so that the copy contains ordinary tensors, not inference tensors.
            with torch.inference_mode(False):
                folded = copy.deepcopy(self.model)
                fold_batch_norm(folded)
            # Stored in __dict__, so it is not a submodule: not in state_dict, not moved by .to().
            cached = (key, folded)
            self.__dict__["_folded"] = cached
        return cached[1]

    def __getstate__(self) -> dict[str, Any]:
        # The folded copy is rebuilt on demand; pickles and deep copies leave it out.
        state = dict(self.__dict__)
        state.pop("_folded", None)
        return state

    # ------------------------------------------------------------------
    # Persistence
    # ------------------------------------------------------------------

    def to_payload(self) -> dict[str, Any]:
        """Return the scorer as tensors and builtins, with weights on the CPU."""
        state_dict = {
            key: value.detach().cpu().contiguous() for key, value in self.model.state_dict().items()
        }
        meta = dict(self.meta)
        meta["score_alpha"] = self.score_alpha
        meta["channels_last"] = self.channels_last
        return {
            "format_version": FORMAT_VERSION,
            "model_name": self.model_name,
            "model_kwargs": self.model_kwargs,
            "state_dict": state_dict,
            "threshold": self.threshold,
            "meta": meta,
        }

    def save(self, path: str | Path) -> Path:
        """Write the scorer to ``path`` atomically; return the path."""
        path = Path(path)
        atomic_save(self.to_payload(), path)
        logger.info("Saved scorer %s (threshold %.6g) to %s", self.model_name, self.threshold, path)
        return path

    @classmethod
    def from_payload(
        cls,
        payload: dict[str, Any],
        map_location: str | torch.device = "cpu",
        source: str = "<payload>",
    ) -> AnomalyScorer:
        """Rebuild a scorer from :meth:`to_payload` output.

        Raises:
            ValueError: keys are missing or the format version is newer than
                this package reads.
        """
        missing = [key for key in _PAYLOAD_KEYS if key not in payload]
        if missing:
            raise ValueError(f"{source}: not a medanomaly scorer; missing key(s) {missing}.")
        if payload["format_version"] > FORMAT_VERSION:
            raise ValueError(
                f"{source}: scorer format version {payload['format_version']} is newer than "
                f"this medanomaly reads ({FORMAT_VERSION}); upgrade medanomaly."
            )
        model = create_model(payload["model_name"], **payload["model_kwargs"])
        model.load_state_dict(payload["state_dict"])
        meta = dict(payload["meta"])
        scorer = cls(
            model,
            threshold=payload["threshold"],
            meta=meta,
            model_kwargs=payload["model_kwargs"],
            score_alpha=meta.get("score_alpha", 0.9),
            channels_last=meta.get("channels_last", False),
        )
        return scorer.to(map_location)

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu") -> AnomalyScorer:
        """Load a scorer written by :meth:`save` (``best.pt`` of a run).

        Raises:
            FileNotFoundError: ``path`` does not exist.
            ValueError: the file is not a medanomaly scorer.
        """
        payload = load_checkpoint(path, map_location="cpu")
        return cls.from_payload(payload, map_location=map_location, source=str(path))


def _weights_key(model: nn.Module) -> tuple | None:
    """Return a value that changes whenever a parameter or buffer of ``model`` is
    replaced, moved or modified in place, or None when it cannot be computed."""
    try:
        return tuple(
            (tensor.data_ptr(), tensor._version, tensor.dtype, tensor.device)
            for tensor in (*model.parameters(), *model.buffers())
        )
    except RuntimeError:
        # Tensors created under torch.inference_mode have no version counter.
        return None


def default_model_kwargs(model: nn.Module) -> dict[str, Any]:
    """Return the ``create_model`` keyword arguments recorded on an AnomalyGAN."""
    recorded = getattr(model, "model_kwargs", None)
    if recorded is not None:
        return dict(recorded)
    return {"in_channels": model.in_channels, "image_size": model.image_size}


def to_plain(value: Any) -> Any:
    """Convert NumPy scalars, arrays, tuples and paths to builtins recursively.

    A scorer's meta must contain only builtins so that it loads with
    ``torch.load(weights_only=True)`` and logs as JSON.
    """
    if isinstance(value, dict):
        return {str(key): to_plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(item) for item in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    # Exact builtins: subclasses such as torch's TorchVersion do not load with weights_only.
    if value is None or isinstance(value, bool):
        return value
    for plain_type in (int, float, str):
        if isinstance(value, plain_type):
            return plain_type(value)
    raise TypeError(f"Scorer meta values must be plain data, got {type(value).__name__}: {value!r}")
