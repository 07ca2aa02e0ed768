"""Losses, training steps and anomaly scores for each model family.

Every model is an ``AnomalyGAN`` with a ``generator`` and a ``discriminator``
that returns ``(logit (B,), features (B, 100))``. The families differ in what
the generator returns, in the generator loss and in the score:

``skip`` (``skipganomaly_pp``, ``skip_ganomaly``; Akcay et al., IJCNN 2019)
    The generator returns the reconstruction. Generator loss
    ``w_adv * BCE(D(fake), real) + w_rec * L1(fake, x) + w_lat * L2(f(fake), f(x))``
    where ``f`` are the discriminator features. Score
    ``alpha * mean squared pixel error + (1 - alpha) * mean squared feature error``.

``ganomaly`` (Akcay et al., ACCV 2018)
    The generator returns ``(reconstruction, z, z_hat)``. Generator loss
    ``w_adv * L2(f(fake), f(x)) + w_rec * L1(fake, x) + w_lat * L2(z, z_hat)``,
    the adversarial term being feature matching. Score: mean squared
    distance between ``z`` and ``z_hat``.

Both families train the discriminator with
``BCE(D(x), real) + BCE(D(fake), fake)`` and re-initialise it when that loss
falls below :data:`D_COLLAPSE_THRESHOLD`, as the Skip-GANomaly and GANomaly
reference implementations do.

Loss names reported per step: ``loss_g`` (weighted total), ``loss_g_adv``,
``loss_g_rec``, ``loss_g_lat`` (unweighted terms), ``loss_d``,
``loss_d_real``, ``loss_d_fake``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from medanomaly.config import TrainConfig
from medanomaly.engine.device import autocast
from medanomaly.networks import init_weights

logger = logging.getLogger(__name__)

# A discriminator loss below this value means D separates real from fake
# perfectly and G gets no useful adversarial signal, so D starts again.
D_COLLAPSE_THRESHOLD = 1e-5

LOSS_NAMES = (
    "loss_g",
    "loss_g_adv",
    "loss_g_rec",
    "loss_g_lat",
    "loss_d",
    "loss_d_real",
    "loss_d_fake",
)


@dataclass
class GeneratorOutput:
    """Generator output in one shape for every family.

    Attributes:
        reconstruction: (B, C, H, W) in [0, 1].
        z: (B, latent) code of the input, GANomaly only.
        z_hat: (B, latent) code of the reconstruction, GANomaly only.
    """

    reconstruction: torch.Tensor
    z: torch.Tensor | None = None
    z_hat: torch.Tensor | None = None


@dataclass
class ScoreOutput:
    """Per-image scores of one batch.

    Attributes:
        scores: (B,) anomaly scores, higher is more anomalous.
        pixel_error: (B,) mean squared pixel error between input and reconstruction.
        residual: (B, 1, H, W) squared error averaged over channels.
        reconstruction: (B, C, H, W) generator output.
    """

    scores: torch.Tensor
    pixel_error: torch.Tensor
    residual: torch.Tensor
    reconstruction: torch.Tensor


@dataclass
class StepOutput:
    """Result of one training step.

    Attributes:
        losses: detached scalar losses keyed by the names in :data:`LOSS_NAMES`.
        d_reinitialised: True when the discriminator was re-initialised.
    """

    losses: dict[str, torch.Tensor]
    d_reinitialised: bool


def _flat_mean(tensor: torch.Tensor) -> torch.Tensor:
    # (B, ...) -> (B,): mean over every non-batch dimension.
    return tensor.flatten(1).mean(dim=1)


def reconstruction_errors(
    x: torch.Tensor, reconstruction: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Compute the residual map and the mean squared pixel error.

    Args:
        x: (B, C, H, W) input.
        reconstruction: (B, C, H, W) generator output.

    Returns:
        ``(residual (B, 1, H, W), pixel_error (B,))``; the residual is the
        squared error averaged over channels.
    """
    residual = (reconstruction.float() - x.float()).pow(2).mean(dim=1, keepdim=True)
    return residual, _flat_mean(residual)


def reinitialise(module: nn.Module) -> None:
    """Re-draw the weights of ``module`` with the networks' DCGAN initialisation.

    Also resets batch-norm running statistics.
    """
    init_weights(module)


def make_optimizers(
    model: nn.Module, config: TrainConfig
) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """Create the Adam optimisers of the generator and the discriminator.

    They use torch's fused Adam kernel for float parameters on the CPU or
    CUDA (torch >= 2.4). It applies the same update as the per-parameter
    loop in one pass over each tensor. On the CPU it made the optimiser
    step of Skip-GANomaly++ about 5x faster.
    """
    betas = tuple(config.betas)
    return (
        _adam(model.generator.parameters(), config.lr, betas),
        _adam(model.discriminator.parameters(), config.lr, betas),
    )


def _adam(parameters, lr: float, betas: tuple) -> torch.optim.Adam:
    parameters = list(parameters)
    # The fused kernel exists for floating-point parameters on these devices.
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in parameters)
    return torch.optim.Adam(parameters, lr=lr, betas=betas, fused=fused or None)


class Family:
    """Training step and score of one model family.

    Subclasses define :meth:`generate`, :meth:`generator_loss_terms` and
    :meth:`score`. The shared :meth:`train_step` updates G, then D.
    """

    name = "base"

    @staticmethod
    def generate(generator: nn.Module, x: torch.Tensor) -> GeneratorOutput:
        """Run the generator on (B, C, H, W) input."""
        raise NotImplementedError

    @staticmethod
    def generator_loss_terms(
        x: torch.Tensor,
        output: GeneratorOutput,
        logit_fake: torch.Tensor,
        features_fake: torch.Tensor,
        features_real: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Return the unweighted ``loss_g_adv``, ``loss_g_rec`` and ``loss_g_lat``."""
        raise NotImplementedError

    @staticmethod
    def score(model: nn.Module, x: torch.Tensor, score_alpha: float) -> ScoreOutput:
        """Score a (B, C, H, W) batch with the model in its current train/eval mode."""
        raise NotImplementedError

    @classmethod
    def train_step(
        cls,
        model: nn.Module,
        x: torch.Tensor,
        config: TrainConfig,
        optimizer_g: torch.optim.Optimizer,
        optimizer_d: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
        use_amp: bool = False,
    ) -> StepOutput:
        """Run one adversarial update on a batch: generator first, then discriminator.

        D(x) runs once and serves both losses. D(fake) runs twice: with the
        graph through G for the generator loss, then on ``fake.detach()`` for
        the discriminator loss. G is updated first, so both D passes use the
        same discriminator weights, as in the Skip-GANomaly reference code.

        Args:
            model: AnomalyGAN in training mode.
            x: (B, C, H, W) batch on the model's device.
            config: loss weights.
            optimizer_g: optimiser of ``model.generator``.
            optimizer_d: optimiser of ``model.discriminator``.
            scaler: GradScaler (disabled unless training in float16).
            use_amp: run the forward passes under CUDA autocast.
        """
        generator, discriminator = model.generator, model.discriminator

        # Forward: reconstruction, D on real and on fake (graph through G).
        with autocast(x.device, use_amp):
            output = cls.generate(generator, x)
            fake = output.reconstruction
            logit_real, features_real = discriminator(x)
            logit_fake, features_fake = discriminator(fake)
            terms = cls.generator_loss_terms(
                x, output, logit_fake, features_fake, features_real.detach()
            )
            loss_g = (
                config.w_adv * terms["loss_g_adv"]
                + config.w_rec * terms["loss_g_rec"]
                + config.w_lat * terms["loss_g_lat"]
            )

        # Generator update. Gradients flow through D into G, and `inputs` keeps
        # them from accumulating on D's weights, which would be wasted work.
        optimizer_g.zero_grad(set_to_none=True)
        scaler.scale(loss_g).backward(inputs=list(generator.parameters()))
        scaler.step(optimizer_g)
        del logit_fake, features_fake

        # Discriminator update on the detached reconstruction.
        with autocast(x.device, use_amp):
            logit_fake_d, _ = discriminator(fake.detach())
            loss_d_real = F.binary_cross_entropy_with_logits(
                logit_real.float(), torch.ones_like(logit_real, dtype=torch.float32)
            )
            loss_d_fake = F.binary_cross_entropy_with_logits(
                logit_fake_d.float(), torch.zeros_like(logit_fake_d, dtype=torch.float32)
            )
            loss_d = loss_d_real + loss_d_fake
        optimizer_d.zero_grad(set_to_none=True)
        scaler.scale(loss_d).backward()
        scaler.step(optimizer_d)
        scaler.update()

        losses = {
            "loss_g": loss_g.detach().float(),
            **{name: value.detach().float() for name, value in terms.items()},
            "loss_d": loss_d.detach().float(),
            "loss_d_real": loss_d_real.detach().float(),
            "loss_d_fake": loss_d_fake.detach().float(),
        }

        # A collapsed D gives G no adversarial signal, so D starts again.
        d_reinitialised = bool(losses["loss_d"] < D_COLLAPSE_THRESHOLD)
        if d_reinitialised:
            reinitialise(discriminator)
            # Adam moments of the old weights would steer the new ones.
            optimizer_d.state.clear()
        return StepOutput(losses=losses, d_reinitialised=d_reinitialised)


class SkipFamily(Family):
    """Skip-GANomaly++ and Skip-GANomaly: BCE adversarial loss, pixel + feature score."""

    name = "skip"

    @staticmethod
    def generate(generator: nn.Module, x: torch.Tensor) -> GeneratorOutput:
        return GeneratorOutput(reconstruction=generator(x))

    @staticmethod
    def generator_loss_terms(x, output, logit_fake, features_fake, features_real):
        fake = output.reconstruction
        return {
            "loss_g_adv": F.binary_cross_entropy_with_logits(
                logit_fake.float(), torch.ones_like(logit_fake, dtype=torch.float32)
            ),
            "loss_g_rec": F.l1_loss(fake.float(), x.float()),
            # Not detached on the fake side: this term must train G.
            "loss_g_lat": F.mse_loss(features_fake.float(), features_real.float()),
        }

    @staticmethod
    def score(model: nn.Module, x: torch.Tensor, score_alpha: float) -> ScoreOutput:
        fake = model.generator(x)
        _, features_real = model.discriminator(x)
        _, features_fake = model.discriminator(fake)
        residual, pixel_error = reconstruction_errors(x, fake)
        feature_error = _flat_mean((features_fake.float() - features_real.float()).pow(2))
        scores = score_alpha * pixel_error + (1.0 - score_alpha) * feature_error
        return ScoreOutput(scores, pixel_error, residual, fake)


class GANomalyFamily(Family):
    """GANomaly: feature-matching adversarial loss, latent-distance score."""

    name = "ganomaly"

    @staticmethod
    def generate(generator: nn.Module, x: torch.Tensor) -> GeneratorOutput:
        reconstruction, z, z_hat = generator(x)
        return GeneratorOutput(reconstruction=reconstruction, z=z, z_hat=z_hat)

    @staticmethod
    def generator_loss_terms(x, output, logit_fake, features_fake, features_real):
        return {
            "loss_g_adv": F.mse_loss(features_fake.float(), features_real.float()),
            "loss_g_rec": F.l1_loss(output.reconstruction.float(), x.float()),
            "loss_g_lat": F.mse_loss(output.z_hat.float(), output.z.float()),
        }

    @staticmethod
    def score(model: nn.Module, x: torch.Tensor, score_alpha: float) -> ScoreOutput:
        # score_alpha does not apply: the GANomaly score is the latent distance alone.
        reconstruction, z, z_hat = model.generator(x)
        residual, pixel_error = reconstruction_errors(x, reconstruction)
        scores = _flat_mean((z.float() - z_hat.float()).pow(2))
        return ScoreOutput(scores, pixel_error, residual, reconstruction)


FAMILIES: dict[str, type[Family]] = {
    "skipganomaly_pp": SkipFamily,
    "skip_ganomaly": SkipFamily,
    "ganomaly": GANomalyFamily,
}


def get_family(model_name: str) -> type[Family]:
    """Return the training step and score of a model by its registry name.

    Raises:
        ValueError: the engine has no training step for ``model_name``.
    """
    try:
        return FAMILIES[model_name]
    except KeyError:
        raise ValueError(
            f"No training step for model {model_name!r}; "
            f"the engine trains {sorted(FAMILIES)}."
        ) from None
