"""Parameter counts and forward cost of every registered model, for ``medanomaly models``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from medanomaly.networks.blocks import format_size, image_shape
from medanomaly.networks.registry import MODEL_NAMES, check_input, create_model, model_info

logger = logging.getLogger(__name__)


def count_parameters(module: nn.Module) -> int:
    """Return the number of parameters of ``module``."""
    return sum(p.numel() for p in module.parameters())


def _count_flops(module: nn.Module, x: torch.Tensor) -> tuple[int, Any]:
    """Return the FLOPs of one forward pass of ``module`` on ``x``, and its output."""
    with FlopCounterMode(display=False) as counter:
        output = module(x)
    return counter.get_total_flops(), output


def describe_model(
    name: str, image_size: int | Sequence[int] = 32, in_channels: int = 3
) -> dict[str, Any]:
    """Describe one registered model at one input size.

    The networks are built on the ``meta`` device, which has shapes but no data,
    so even a large model costs neither memory nor compute time. FLOPs come from
    ``torch.utils.flop_counter.FlopCounterMode`` on one image in eval mode. It
    counts a multiply-add as 2 FLOPs and counts only matrix products and
    convolutions, not normalisation or activations.

    Returns:
        A dict with these keys:

        - ``name``, ``description``, ``paper``, ``size_rule``: from :func:`model_info`.
        - ``image_size`` (text such as ``"32"`` or ``"40x24"``) and ``in_channels``.
        - ``ok``: whether the model takes this size, and ``error``: the reason when not.
        - ``parameters``: counts for ``generator``, ``discriminator`` and ``total``.
        - ``gflops``: ``generator`` is one generator forward pass, and ``total`` adds
          the discriminator on the reconstruction.

        ``parameters`` and ``gflops`` are None when the size is not accepted.
    """
    info = model_info(name)
    try:
        size_text = format_size(image_shape(image_size))
    except ValueError:
        size_text = str(image_size)
    row: dict[str, Any] = {
        **info,
        "image_size": size_text,
        "in_channels": in_channels,
        "ok": True,
        "error": None,
        "parameters": None,
        "gflops": None,
    }
    try:
        check_input(name, in_channels, image_size)
    except ValueError as err:
        row["ok"] = False
        row["error"] = str(err)
        return row

    with torch.device("meta"):
        model = create_model(name, in_channels=in_channels, image_size=image_size).eval()
        height, width = model.image_shape
        x = torch.empty(1, in_channels, height, width)
        generator_flops, output = _count_flops(model.generator, x)
        reconstruction = output[0] if isinstance(output, tuple) else output
        discriminator_flops, _ = _count_flops(model.discriminator, reconstruction)

    generator_parameters = count_parameters(model.generator)
    discriminator_parameters = count_parameters(model.discriminator)
    row["parameters"] = {
        "generator": generator_parameters,
        "discriminator": discriminator_parameters,
        "total": generator_parameters + discriminator_parameters,
    }
    row["gflops"] = {
        "generator": generator_flops / 1e9,
        "total": (generator_flops + discriminator_flops) / 1e9,
    }
    return row


def describe_models(
    image_size: int | Sequence[int] = 32, in_channels: int = 3
) -> list[dict[str, Any]]:
    """Describe every registered model at one input size with :func:`describe_model`."""
    return [describe_model(name, image_size, in_channels) for name in MODEL_NAMES]


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """Format :func:`describe_models` rows as a plain-text table.

    Rejected sizes show ``no`` in the ``ok`` column, and their errors follow the table.
    """
    header = ("model", "size", "ok", "G params", "D params", "total params",
              "G GFLOP", "G+D GFLOP", "size rule")
    lines = [header]
    errors = []
    for row in rows:
        size = f"{row['in_channels']}x{row['image_size']}"
        if row["ok"]:
            parameters, gflops = row["parameters"], row["gflops"]
            values = (
                f"{parameters['generator']:,}",
                f"{parameters['discriminator']:,}",
                f"{parameters['total']:,}",
                f"{gflops['generator']:.3f}",
                f"{gflops['total']:.3f}",
            )
        else:
            values = ("-",) * 5
            errors.append(row["error"])
        lines.append((row["name"], size, "yes" if row["ok"] else "no", *values, row["size_rule"]))

    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    # Text columns align left, numeric columns right.
    left_aligned = {0, 1, 2, len(header) - 1}
    text_lines = []
    for line in lines:
        cells = [
            cell.ljust(widths[i]) if i in left_aligned else cell.rjust(widths[i])
            for i, cell in enumerate(line)
        ]
        text_lines.append("  ".join(cells).rstrip())
    text_lines.insert(1, "  ".join("-" * w for w in widths))
    if errors:
        text_lines.append("")
        text_lines.extend(errors)
    return "\n".join(text_lines)
