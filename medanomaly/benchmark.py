"""Throughput, memory and compute efficiency of training and scoring.

Each configuration (a :class:`BenchmarkCase`) is measured for:

- training images/s: the engine's real training step (generator and
  discriminator updates with Adam), after warm-up steps;
- scoring images/s: :class:`~medanomaly.engine.scorer.AnomalyScorer` in eval
  mode under ``torch.inference_mode``;
- peak resident memory of the process (``ru_maxrss``), and on CUDA the peak
  memory allocated on the device;
- achieved GFLOP/s as a fraction of the machine's practical peak. FLOPs come
  from ``torch.utils.flop_counter.FlopCounterMode`` over one real training
  step and one scoring batch. It counts a multiply-add as 2 FLOPs and counts
  only convolutions and matrix products. The practical peak is the speed of a
  large fp32 3x3 convolution (:data:`PEAK_CONV_SHAPE`) timed in the same
  process, so the fraction means the same on any machine;
- the same fraction for the convolutions alone: every convolution of a
  training step or scoring batch is recorded (:class:`ConvolutionRecorder`)
  and replayed with nothing between the calls. This is the fraction the step
  or batch would reach if batch norm, activations, copies and the optimiser
  cost nothing.

Each timed step or batch is followed by a block of peak convolutions of
about the same duration (:func:`time_against_peak`), so that both see the
same machine load. Figures are the fastest repeat ("best"), which is the
one least disturbed by other processes, with medians alongside. The
fraction of the peak is best step against best block, and its median is
over the pairs of a step and the block after it.

:func:`measure_dicom_scoring` times ``medanomaly score`` end to end on a CT
series written with pydicom and compares it with the model time for the same
number of slices.

Run ``python pipelines/benchmark.py`` for the full report.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import io
import json
import logging
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from medanomaly.config import TrainConfig
from medanomaly.engine.device import (
    amp_enabled,
    autocast,
    cpu_model,
    make_grad_scaler,
    memory_format,
    resolve_device,
)
from medanomaly.engine.scorer import AnomalyScorer
from medanomaly.engine.steps import FAMILIES, get_family, make_optimizers
from medanomaly.networks import MODEL_NAMES, create_model

logger = logging.getLogger(__name__)

# (batch, channels, height, width) of the convolution that defines the
# practical peak: 256 -> 256 channels, 3x3 kernel, "same" padding, forward.
PEAK_CONV_SHAPE = (32, 256, 32, 32)

# Targets: the training step and scoring at this fraction of the peak
# convolution speed, and ``medanomaly score`` on a DICOM series within this
# factor of the model time for the same slices.
PEAK_FRACTION_TARGET = 0.80
DICOM_OVERHEAD_TARGET = 1.25

# Scoring batch size of the ``medanomaly score`` command.
CLI_BATCH_SIZE = 32


@dataclass(frozen=True)
class BenchmarkCase:
    """One measured configuration: a model at an input size and batch size."""

    model: str
    in_channels: int
    image_size: int
    batch_size: int

    @property
    def label(self) -> str:
        """Short name such as ``skipganomaly_pp 3x32x32 b64``."""
        size = self.image_size
        return f"{self.model} {self.in_channels}x{size}x{size} b{self.batch_size}"


def default_cases(quick: bool = False) -> tuple[BenchmarkCase, ...]:
    """Return the configurations to measure.

    Every model the engine trains runs at 3x32x32 with batch 64, and
    Skip-GANomaly++ also at 1x128x128 with batch 16 (the CT scoring size).
    ``quick`` keeps only Skip-GANomaly++ at 3x32x32.
    """
    main_case = BenchmarkCase("skipganomaly_pp", 3, 32, 64)
    if quick:
        return (main_case,)
    trainable = [name for name in MODEL_NAMES if name in FAMILIES]
    cases = [BenchmarkCase(name, 3, 32, 64) for name in trainable]
    cases.append(BenchmarkCase("skipganomaly_pp", 1, 128, 16))
    return tuple(cases)


# --------------------------------------------------------------------------
# Machine and memory
# --------------------------------------------------------------------------


def machine_info(device: torch.device | None = None, threads: int | None = None) -> dict[str, Any]:
    """Describe the hardware, software and load that the figures depend on.

    Args:
        device: the measured device.
        threads: the thread count requested by the caller, None for torch's default.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info: dict[str, Any] = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu_model": cpu_model(),
        "cpu_cores": cores,
        "torch_threads": torch.get_num_threads(),
        "torch_threads_default": threads is None,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "mkldnn_enabled": bool(torch.backends.mkldnn.enabled),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    if device is not None and device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def set_threads(threads: int | None) -> None:
    """Set torch's intra-op threads, or keep torch's default when ``threads`` is None."""
    if threads is not None:
        torch.set_num_threads(threads)


def peak_rss_mib() -> float:
    """Return the peak resident memory of this process in MiB (``ru_maxrss``)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


# --------------------------------------------------------------------------
# Timing helpers
# --------------------------------------------------------------------------


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA work, so that a wall-clock time covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(function: Callable[[], Any], device: torch.device, warmup: int, repeats: int) -> list[float]:
    """Call ``function`` ``warmup`` times untimed, then ``repeats`` times; return the seconds of each timed call."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}.")
    for _ in range(warmup):
        function()
    synchronize(device)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        synchronize(device)
        seconds.append(time.perf_counter() - start)
    return seconds


def summarise_times(seconds: Sequence[float], items: int, flops: float | None = None) -> dict[str, Any]:
    """Turn per-call seconds into best and median items/s and GFLOP/s.

    Args:
        seconds: duration of each timed call.
        items: images processed per call.
        flops: FLOPs per call, or None.
    """
    best = min(seconds)
    median = statistics.median(seconds)
    summary: dict[str, Any] = {
        "seconds": [round(value, 6) for value in seconds],
        "best_s": best,
        "median_s": median,
        "images_per_s": items / best,
        "images_per_s_median": items / median,
    }
    if flops is not None:
        summary["gflop"] = flops / 1e9
        summary["gflops_per_s"] = flops / best / 1e9
        summary["gflops_per_s_median"] = flops / median / 1e9
    return summary


# --------------------------------------------------------------------------
# Practical peak
# --------------------------------------------------------------------------


class PeakConvolution:
    """The convolution that defines the practical peak, prepared once and timed on demand.

    A 3x3 "same" convolution with as many output as input channels, forward
    only, in float32 (or float16 autocast on CUDA with ``use_amp``). Both
    memory layouts are tried, and the faster one is kept, so that the peak
    is the best this machine reaches on a convolution.

    Args:
        device: where to run.
        use_amp: float16 autocast (CUDA only), the precision of mixed-precision training.
        shape: (batch, channels, height, width) of the input.
        repeats: timed passes per layout when choosing the layout.
    """

    def __init__(
        self,
        device: torch.device | str = "cpu",
        use_amp: bool = False,
        shape: Sequence[int] = PEAK_CONV_SHAPE,
        repeats: int = 2,
    ) -> None:
        self.device = torch.device(device)
        self.use_amp = use_amp
        batch, channels, height, width = (int(value) for value in shape)
        self.shape = [batch, channels, height, width]
        self.flops = 2 * batch * channels * height * width * channels * 9
        generator = torch.Generator().manual_seed(0)
        self._x = torch.randn(batch, channels, height, width, generator=generator).to(self.device)
        self._weight = (torch.randn(channels, channels, 3, 3, generator=generator) * 0.01).to(self.device)

        self.per_layout = {}
        for name, layout in (("contiguous", torch.contiguous_format), ("channels_last", torch.channels_last)):
            self._use_layout(layout)
            seconds = time_calls(self.run, self.device, warmup=1, repeats=repeats)
            self.per_layout[name] = summarise_times(seconds, batch, self.flops)
        self.layout = max(self.per_layout, key=lambda name: self.per_layout[name]["gflops_per_s"])
        self._use_layout(torch.channels_last if self.layout == "channels_last" else torch.contiguous_format)
        self.pass_seconds = self.per_layout[self.layout]["best_s"]

    @property
    def precision(self) -> str:
        """``float32`` or ``float16 autocast``."""
        return "float16 autocast" if self.use_amp and self.device.type == "cuda" else "float32"

    def _use_layout(self, layout: torch.memory_format) -> None:
        self._layout_x = self._x.contiguous(memory_format=layout)
        self._layout_weight = self._weight.contiguous(memory_format=layout)

    def run(self) -> None:
        """Run one forward pass."""
        with torch.inference_mode(), autocast(self.device, self.use_amp):
            F.conv2d(self._layout_x, self._layout_weight, padding=1)

    def time_block(self, passes: int) -> float:
        """Run ``passes`` passes back to back and return their GFLOP/s."""
        synchronize(self.device)
        start = time.perf_counter()
        for _ in range(passes):
            self.run()
        synchronize(self.device)
        return passes * self.flops / (time.perf_counter() - start) / 1e9

    def passes_for(self, seconds: float) -> int:
        """Return how many passes take about ``seconds``, at least one."""
        return max(1, round(seconds / self.pass_seconds))


def measure_conv_peak(
    device: torch.device | str = "cpu",
    repeats: int = 5,
    use_amp: bool = False,
    shape: Sequence[int] = PEAK_CONV_SHAPE,
) -> dict[str, Any]:
    """Time the peak convolution alone (see :class:`PeakConvolution`).

    Returns:
        ``gflops_per_s`` (best layout, best repeat), ``gflops_per_s_median``,
        ``layout``, ``gflop`` per pass, ``precision`` and ``per_layout`` details.
    """
    peak = PeakConvolution(device, use_amp, shape, repeats=repeats)
    best = peak.per_layout[peak.layout]
    return {
        "gflops_per_s": best["gflops_per_s"],
        "gflops_per_s_median": best["gflops_per_s_median"],
        "layout": peak.layout,
        "gflop": peak.flops / 1e9,
        "shape": peak.shape,
        "precision": peak.precision,
        "per_layout": peak.per_layout,
    }


def time_against_peak(
    function: Callable[[], Any],
    peak: PeakConvolution,
    items: int,
    flops: float,
    warmup: int,
    repeats: int,
) -> dict[str, Any]:
    """Time ``function`` and the peak convolution in alternation.

    After each timed call, the peak convolution runs for about as long as
    that call took. Both then see the same machine load, which matters when
    other processes share the cores: a short convolution would otherwise
    catch quiet moments more often than a long training step.

    Returns:
        :func:`summarise_times` of the calls plus ``peak_gflops_per_s`` (best
        block), ``peak_fraction`` (best call against best block) and
        ``peak_fraction_median`` (median over the pairs of a call and the
        block after it).
    """
    device = peak.device
    for _ in range(warmup):
        function()
    synchronize(device)
    seconds, peak_rates = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        synchronize(device)
        seconds.append(time.perf_counter() - start)
        peak_rates.append(peak.time_block(peak.passes_for(seconds[-1])))

    summary = summarise_times(seconds, items, flops)
    pair_fractions = [flops / elapsed / 1e9 / rate for elapsed, rate in zip(seconds, peak_rates)]
    summary["peak_gflops_per_s"] = max(peak_rates)
    summary["peak_gflops_per_s_all"] = peak_rates
    summary["peak_fraction"] = summary["gflops_per_s"] / max(peak_rates)
    summary["peak_fraction_median"] = statistics.median(pair_fractions)
    return summary


# --------------------------------------------------------------------------
# Convolutions alone
# --------------------------------------------------------------------------

# Under inference mode, conv2d and conv_transpose2d reach the dispatcher as
# themselves. With autograd on, both decompose into ``convolution`` first.
CONVOLUTION_OPS = (
    torch.ops.aten.convolution.default,
    torch.ops.aten.conv2d.default,
    torch.ops.aten.conv_transpose2d.input,
    torch.ops.aten.convolution_backward.default,
)


def _stand_in(value: Any) -> Any:
    # Tensors become new ones of the same shape, strides, dtype and device with
    # random values. Other arguments (padding, output mask, ...) stay as they were.
    if isinstance(value, torch.Tensor):
        stand_in = torch.empty_strided(value.shape, value.stride(), dtype=value.dtype, device=value.device)
        return stand_in.normal_() if stand_in.is_floating_point() else stand_in.zero_()
    if isinstance(value, (list, tuple)):
        return type(value)(_stand_in(item) for item in value)
    return value


class ConvolutionRecorder(TorchDispatchMode):
    """Record every convolution, forward and backward, of the code run under it.

    Each call is kept with stand-in tensors of the same shapes, strides and
    dtypes, so that :meth:`replay` runs the same convolution kernels with
    nothing else between them. Timing the replay gives the time a step
    would take if everything but its convolutions cost nothing.
    """

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[Any, tuple, dict]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in CONVOLUTION_OPS:
            self.calls.append((func, _stand_in(args), _stand_in(kwargs)))
        return func(*args, **kwargs)

    def counts(self) -> dict[str, int]:
        """Return the number of recorded forward and backward convolutions."""
        backward = sum(func is torch.ops.aten.convolution_backward.default for func, _, _ in self.calls)
        return {"forward": len(self.calls) - backward, "backward": backward}

    def replay(self) -> None:
        """Run every recorded convolution once, in the recorded order."""
        with torch.no_grad():
            for func, args, kwargs in self.calls:
                func(*args, **kwargs)


# --------------------------------------------------------------------------
# Training and scoring
# --------------------------------------------------------------------------


@dataclass
class TrainingSetup:
    """A model ready for :meth:`Family.train_step` with its optimisers."""

    model: torch.nn.Module
    config: TrainConfig
    optimizer_g: torch.optim.Optimizer
    optimizer_d: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    use_amp: bool

    def step(self, x: torch.Tensor) -> Any:
        """Run one training step of the model's family on ``x``."""
        family = get_family(self.model.name)
        return family.train_step(
            self.model,
            x,
            self.config,
            self.optimizer_g,
            self.optimizer_d,
            self.scaler,
            self.use_amp,
        )


def check_repeats(warmup: int, steps: int, score_repeats: int) -> None:
    """Raise ValueError unless there is at least one timed step and batch."""
    if warmup < 0:
        raise ValueError(f"warmup must be 0 or more steps, got {warmup}.")
    if steps < 1:
        raise ValueError(f"steps must be at least 1 timed training step, got {steps}.")
    if score_repeats < 1:
        raise ValueError(f"score_repeats must be at least 1 timed batch, got {score_repeats}.")


def make_training_setup(
    model: torch.nn.Module, device: torch.device, config: TrainConfig | None = None
) -> TrainingSetup:
    """Move ``model`` to ``device`` in the trainer's layout and create its optimisers."""
    config = config or TrainConfig()
    model.to(device=device, memory_format=memory_format(config.channels_last))
    model.train()
    optimizer_g, optimizer_d = make_optimizers(model, config)
    use_amp = amp_enabled(device, config.amp)
    scaler = make_grad_scaler(device, use_amp)
    return TrainingSetup(model, config, optimizer_g, optimizer_d, scaler, use_amp)


def make_batch(
    batch_size: int, in_channels: int, image_size: int, device: torch.device, channels_last: bool, seed: int = 0
) -> torch.Tensor:
    """Return a (B, C, H, W) batch of uniform [0, 1) images in the requested layout."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(batch_size, in_channels, image_size, image_size, generator=generator)
    return x.to(device=device, memory_format=memory_format(channels_last))


def count_train_step_flops(setup: TrainingSetup, x: torch.Tensor) -> int:
    """Count the FLOPs of one training step on ``x``.

    The step runs on a copy of the model and of the optimisers, so the
    measured model is unchanged.
    """
    model = copy.deepcopy(setup.model)
    optimizer_g, optimizer_d = make_optimizers(model, setup.config)
    shadow = TrainingSetup(model, setup.config, optimizer_g, optimizer_d, setup.scaler, setup.use_amp)
    with FlopCounterMode(display=False) as counter:
        shadow.step(x)
    return int(counter.get_total_flops())


def record_train_step_convolutions(setup: TrainingSetup, x: torch.Tensor) -> ConvolutionRecorder:
    """Record the convolutions of one training step on ``x``.

    The step updates ``setup``'s model, so pass a model that is not measured afterwards.
    """
    with ConvolutionRecorder() as recorder:
        setup.step(x)
    return recorder


def time_convolutions_alone(
    recorder: ConvolutionRecorder,
    measured: dict[str, Any],
    peak: PeakConvolution,
    items: int,
    flops: float,
    warmup: int,
    repeats: int,
) -> dict[str, Any]:
    """Time the recorded convolutions against the peak, as :func:`time_against_peak` does.

    ``flops`` are those of the whole measured call, so ``peak_fraction`` is
    the fraction that call would reach if its other operations cost nothing.
    ``share_of_time`` is the replay's best time over the best time in ``measured``.
    """
    convolutions = time_against_peak(recorder.replay, peak, items, flops, min(warmup, 1), repeats)
    convolutions["calls"] = recorder.counts()
    convolutions["share_of_time"] = convolutions["best_s"] / measured["best_s"]
    return convolutions


def count_scoring_flops(scorer: AnomalyScorer, x: torch.Tensor) -> int:
    """Count the FLOPs of scoring one batch with ``scorer``."""
    with FlopCounterMode(display=False) as counter:
        scorer(x)
    return int(counter.get_total_flops())


def run_case(
    case: BenchmarkCase,
    device: torch.device | str = "cpu",
    warmup: int = 2,
    steps: int = 5,
    score_repeats: int = 5,
    seed: int = 0,
    threads: int | None = None,
    peak_shape: Sequence[int] = PEAK_CONV_SHAPE,
) -> dict[str, Any]:
    """Measure training and scoring of one configuration in this process.

    Args:
        case: model, channels, image size and batch size.
        device: ``cpu``, ``cuda`` or ``auto``.
        warmup: untimed training steps (and scoring batches) first.
        steps: timed training steps.
        score_repeats: timed scoring batches.
        seed: seed of the weights and of the random images.
        threads: torch intra-op threads, or None for torch's default.
        peak_shape: input shape of the peak convolution; smaller shapes
            are for tests, and their peak is lower.

    Raises:
        ValueError: ``warmup`` is negative, or ``steps`` or ``score_repeats`` is below 1.
    """
    check_repeats(warmup, steps, score_repeats)
    device = resolve_device(device)
    set_threads(threads)
    torch.manual_seed(seed)
    start_rss = peak_rss_mib()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    config = TrainConfig(batch_size=case.batch_size)
    model = create_model(case.model, in_channels=case.in_channels, image_size=case.image_size)
    setup = make_training_setup(model, device, config)
    x = make_batch(case.batch_size, case.in_channels, case.image_size, device, config.channels_last, seed)
    logger.info("Measuring %s on %s (%d threads)", case.label, device, torch.get_num_threads())

    peak_train = PeakConvolution(device, use_amp=setup.use_amp, shape=peak_shape)
    train_flops = count_train_step_flops(setup, x)
    train = time_against_peak(lambda: setup.step(x), peak_train, case.batch_size, train_flops, warmup, steps)
    train["gflop_per_image"] = train_flops / case.batch_size / 1e9
    train_rss = peak_rss_mib()

    # The scorer wraps the trained model: it switches it to eval mode and freezes it.
    scorer = AnomalyScorer(model, threshold=0.0, channels_last=config.channels_last)
    # The scorer runs in float32 even where training uses mixed precision.
    peak_score = peak_train if not setup.use_amp else PeakConvolution(device, shape=peak_shape)
    score_flops = count_scoring_flops(scorer, x)
    score = time_against_peak(
        lambda: scorer(x), peak_score, case.batch_size, score_flops, max(warmup, 1), score_repeats
    )
    score["gflop_per_image"] = score_flops / case.batch_size / 1e9
    memory = {
        "rss_at_start_mib": start_rss,
        "peak_rss_after_training_mib": train_rss,
        "peak_rss_mib": peak_rss_mib(),
    }
    if device.type == "cuda":
        memory["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated(device) / 2**20

    # The convolutions alone come last, because the recorder's stand-in tensors
    # would otherwise count in the peak memory above.
    with ConvolutionRecorder() as recorder:
        scorer(x)
    score["convolutions_only"] = time_convolutions_alone(
        recorder, score, peak_score, case.batch_size, score_flops, warmup, score_repeats
    )
    del recorder
    # The scorer froze the trained model, so a new one of the same shape runs the recorded step.
    fresh = make_training_setup(
        create_model(case.model, in_channels=case.in_channels, image_size=case.image_size), device, config
    )
    train["convolutions_only"] = time_convolutions_alone(
        record_train_step_convolutions(fresh, x), train, peak_train, case.batch_size, train_flops, warmup, steps
    )

    result: dict[str, Any] = {
        "case": asdict(case),
        "label": case.label,
        "device": str(device),
        "mixed_precision": setup.use_amp,
        "channels_last": config.channels_last,
        "threads": torch.get_num_threads(),
        "warmup_steps": warmup,
        "train": train,
        "score": score,
        "peak": {
            # Both phases time the same float32 convolution unless training uses float16.
            "gflops_per_s": (
                train["peak_gflops_per_s"]
                if setup.use_amp
                else max(train["peak_gflops_per_s"], score["peak_gflops_per_s"])
            ),
            "layout": peak_train.layout,
            "precision": peak_train.precision,
            "shape": peak_train.shape,
            "single_pass": peak_train.per_layout,
        },
        "memory": memory,
    }
    return result


# --------------------------------------------------------------------------
# DICOM end to end
# --------------------------------------------------------------------------


def write_ct_series(folder: str | Path, slices: int = 300, size: int = 512, seed: int = 0) -> list[Path]:
    """Write an uncompressed int16 CT series of a simple phantom, one file per slice.

    The phantom is a water disk in air with a brighter core and noise: the
    timing does not depend on the anatomy, and rendering it is cheap.
    """
    from medanomaly.synthetic.phantom import make_geometry
    from medanomaly.synthetic.writers import write_dicom_series

    geometry = make_geometry(size=size, n_slices=slices)
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:size, 0:size]
    radius = np.hypot(rows - size / 2, cols - size / 2) / (size / 2)
    base = np.where(radius < 0.8, 30.0, -1000.0) + np.where(radius < 0.3, 40.0, 0.0)
    volume = np.empty((slices, size, size), dtype=np.int16)
    for index in range(slices):
        noise = rng.normal(0.0, 10.0, size=(size, size))
        volume[index] = np.clip(np.rint(base + noise), -1024, 3071).astype(np.int16)
    return write_dicom_series(folder, volume, geometry, seed=seed, subject_number=0)


def _score_tensors(scorer: AnomalyScorer, images: torch.Tensor, batch_size: int) -> np.ndarray:
    scores = []
    for start in range(0, images.shape[0], batch_size):
        batch_scores, _, _ = scorer.score_with_maps(images[start : start + batch_size])
        scores.append(batch_scores.float().cpu())
    return torch.cat(scores).numpy()


@contextlib.contextmanager
def _record_scoring_time(durations: list[float]) -> Any:
    """Append the seconds of every ``AnomalyScorer.score_with_maps`` call inside the block.

    The command loads its own scorer, so the method is wrapped on the class.
    """
    original = AnomalyScorer.score_with_maps

    def timed(self: AnomalyScorer, x: torch.Tensor) -> Any:
        start = time.perf_counter()
        try:
            return original(self, x)
        finally:
            synchronize(self.device)
            durations.append(time.perf_counter() - start)

    AnomalyScorer.score_with_maps = timed
    try:
        yield
    finally:
        AnomalyScorer.score_with_maps = original


def _run_cli_score(
    model_path: Path, dicom_dir: Path, out_dir: Path, device: torch.device
) -> tuple[float, float]:
    """Run ``medanomaly score`` in this process.

    Returns:
        The command's wall-clock seconds and the seconds spent in the scorer.
    """
    from medanomaly.cli import main as cli_main

    argv = [
        "score",
        "--model", str(model_path),
        "--dicom-dir", str(dicom_dir),
        "--out", str(out_dir),
        "--batch-size", str(CLI_BATCH_SIZE),
        "--device", str(device),
        "--quiet",
    ]
    captured = io.StringIO()
    scoring: list[float] = []
    start = time.perf_counter()
    with contextlib.redirect_stdout(captured), _record_scoring_time(scoring):
        code = cli_main(argv)
    seconds = time.perf_counter() - start
    if code != 0:
        raise RuntimeError(
            f"medanomaly score exited with code {code}; the error is on stderr. "
            f"Last output: {captured.getvalue()[-500:]!r}"
        )
    return seconds, sum(scoring)


def _run_loader_score(scorer: AnomalyScorer, dicom_dir: Path, preprocessing: dict[str, Any]) -> float:
    """Time build_dataset and score_loader, the library path that ``medanomaly score`` wraps."""
    from torch.utils.data import DataLoader

    from medanomaly.data import build_dataset
    from medanomaly.engine.scoring import score_loader

    start = time.perf_counter()
    dataset, _ = build_dataset("dicom", dicom_dir, **preprocessing)
    score_loader(scorer, DataLoader(dataset, batch_size=CLI_BATCH_SIZE, shuffle=False))
    return time.perf_counter() - start


def measure_dicom_scoring(
    workdir: str | Path | None = None,
    slices: int = 300,
    size: int = 512,
    image_size: int = 128,
    device: torch.device | str = "cpu",
    flagged_fraction: float = 0.05,
    seed: int = 0,
    threads: int | None = None,
    repeats: int = 1,
) -> dict[str, Any]:
    """Compare ``medanomaly score`` on a DICOM series with the model time for its slices.

    Steps:

    1. Write the series with pydicom.
    2. Decode and preprocess it once with ``build_dataset``, timed as ``decode_s``.
    3. Score the preprocessed (1, image_size, image_size) tensors with the
       scorer in batches of :data:`CLI_BATCH_SIZE`: the pure model time.
    4. Run ``medanomaly score`` in this process, then step 3 again, ``repeats`` times.

    Each command run is compared with the mean of the model runs just before
    and after it, so that a change of machine load during the measurement
    affects both sides alike. ``ratio`` is the median of these ratios.
    ``ratio_in_command`` divides each command run by the time it spent in
    ``AnomalyScorer.score_with_maps``, so both parts come from the same run.

    The scorer is an untrained Skip-GANomaly++ with random weights. Its
    threshold is the ``1 - flagged_fraction`` quantile of the pure-model
    scores, so the command writes panels for that fraction of the slices, as
    a calibrated model would on normal scans.

    When the command fails, ``build_dataset`` + ``score_loader`` are timed
    instead, and ``method`` and ``error`` record that.

    Returns:
        A dict with ``method``, ``end_to_end_s``, ``model_s``, ``ratio``
        (end to end / model), ``ratio_in_command``, ``decode_s``,
        ``write_s``, slices and sizes.

    Raises:
        ValueError: ``repeats`` is below 1.
        RuntimeError: the DICOM reader did not return every written slice.
    """
    from medanomaly.data import build_dataset

    if repeats < 1:
        raise ValueError(f"repeats must be at least 1 run of the command, got {repeats}.")
    device = resolve_device(device)
    set_threads(threads)
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="medanomaly-bench-"))
        workdir = Path(workdir)
        dicom_dir = workdir / "series"

        start = time.perf_counter()
        write_ct_series(dicom_dir, slices=slices, size=size, seed=seed)
        write_seconds = time.perf_counter() - start

        torch.manual_seed(seed)
        model = create_model("skipganomaly_pp", in_channels=1, image_size=image_size)
        meta = {"preset": "brain", "resize_mode": "resize", "image_size": image_size, "in_channels": 1}
        scorer = AnomalyScorer(model, threshold=0.0, meta=meta, channels_last=True).to(device)
        preprocessing = {
            "image_size": image_size,
            "in_channels": 1,
            "preset": meta["preset"],
            "resize_mode": meta["resize_mode"],
        }

        start = time.perf_counter()
        dataset, skipped = build_dataset("dicom", dicom_dir, **preprocessing)
        images = torch.stack([dataset[index]["image"] for index in range(len(dataset))])
        decode_seconds = time.perf_counter() - start
        if skipped or images.shape[0] != slices:
            raise RuntimeError(
                f"build_dataset read {images.shape[0]} of the {slices} slices written to {dicom_dir} "
                f"and skipped {skipped[:3]}; the DICOM reader failed on the benchmark series."
            )

        model_seconds = []
        start = time.perf_counter()
        scores = _score_tensors(scorer, images, CLI_BATCH_SIZE)
        model_seconds.append(time.perf_counter() - start)
        scorer.threshold = float(np.quantile(scores, 1.0 - flagged_fraction))
        model_path = scorer.save(workdir / "scorer.pt")

        method = "medanomaly score (in process)"
        error = None
        end_to_end_seconds, in_command_seconds = [], []
        for repeat in range(repeats):
            out_dir = workdir / f"out-{repeat}" if repeat else workdir / "out"
            if error is None:
                try:
                    elapsed, scoring = _run_cli_score(model_path, dicom_dir, out_dir, device)
                    end_to_end_seconds.append(elapsed)
                    in_command_seconds.append(scoring)
                except Exception as err:  # the command is optional here; its failure is reported
                    logger.warning(
                        "medanomaly score failed (%s); timing build_dataset + score_loader instead", err
                    )
                    method, error = "build_dataset + score_loader", str(err)
            if error is not None:
                end_to_end_seconds.append(_run_loader_score(scorer, dicom_dir, preprocessing))

            start = time.perf_counter()
            _score_tensors(scorer, images, CLI_BATCH_SIZE)
            model_seconds.append(time.perf_counter() - start)

    bracketed = [
        elapsed / ((model_seconds[i] + model_seconds[i + 1]) / 2)
        for i, elapsed in enumerate(end_to_end_seconds)
    ]
    end_to_end_best, model_best = min(end_to_end_seconds), min(model_seconds)
    return {
        "method": method,
        "error": error,
        "slices": slices,
        "slice_size": size,
        "image_size": image_size,
        "batch_size": CLI_BATCH_SIZE,
        "write_s": write_seconds,
        "decode_s": decode_seconds,
        "model_s": model_best,
        "model_s_all": model_seconds,
        "end_to_end_s": end_to_end_best,
        "end_to_end_s_all": end_to_end_seconds,
        "ratio": statistics.median(bracketed),
        "ratio_all": bracketed,
        "ratio_best": end_to_end_best / model_best,
        # Same-run figure: the command's time against its own time in the scorer.
        "model_in_command_s_all": in_command_seconds,
        "ratio_in_command": (
            statistics.median(total / inside for total, inside in zip(end_to_end_seconds, in_command_seconds))
            if in_command_seconds
            else None
        ),
        "slices_per_s_end_to_end": slices / end_to_end_best,
        "slices_per_s_model": slices / model_best,
        "peak_rss_mib": peak_rss_mib(),
    }


# --------------------------------------------------------------------------
# Fresh processes
# --------------------------------------------------------------------------


def run_in_subprocess(kind: str, arguments: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
    """Run :func:`run_case` (``kind="case"``) or :func:`measure_dicom_scoring`
    (``kind="dicom"``) in a fresh Python process, so that its peak memory is its own.

    Raises:
        RuntimeError: the process failed or printed no result.
    """
    package_root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "medanomaly.benchmark", kind, json.dumps(arguments)]
    completed = subprocess.run(
        command, stdout=subprocess.PIPE, stderr=None, text=True, env=env, timeout=timeout, check=False
    )
    lines = completed.stdout.strip().splitlines()
    if completed.returncode != 0 or not lines:
        raise RuntimeError(
            f"Benchmark worker {kind} {arguments} failed with exit code {completed.returncode}; "
            "its error is on stderr above."
        )
    return json.loads(lines[-1])


def _worker(argv: Sequence[str]) -> int:
    """Entry point of the fresh process: run one measurement, print it as one JSON line."""
    kind, arguments = argv[0], json.loads(argv[1])
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    if kind == "case":
        case = BenchmarkCase(**arguments.pop("case"))
        result = run_case(case, **arguments)
    elif kind == "dicom":
        result = measure_dicom_scoring(**arguments)
    else:
        raise ValueError(f"Unknown benchmark worker kind {kind!r}; use 'case' or 'dicom'.")
    print(json.dumps(result))
    return 0


# --------------------------------------------------------------------------
# Whole benchmark and report
# --------------------------------------------------------------------------


# (warm-up steps, timed steps, timed scoring batches) of a full and a quick run.
FULL_REPEATS = (2, 5, 5)
QUICK_REPEATS = (1, 3, 3)


def run_benchmark(
    quick: bool = False,
    device: str = "auto",
    warmup: int | None = None,
    steps: int | None = None,
    score_repeats: int | None = None,
    dicom: bool = True,
    dicom_slices: int = 300,
    fresh_process: bool = True,
    threads: int | None = None,
    dicom_repeats: int = 1,
    cases: bool = True,
) -> dict[str, Any]:
    """Measure every configuration of :func:`default_cases`, then the DICOM path.

    Args:
        quick: only Skip-GANomaly++ at 3x32x32, fewer repeats, no DICOM
            measurement; about a minute on two loaded CPU cores.
        device: ``auto``, ``cpu`` or ``cuda``.
        warmup: untimed training steps per configuration; None takes
            :data:`FULL_REPEATS` or :data:`QUICK_REPEATS`, as do the next two.
        steps: timed training steps per configuration.
        score_repeats: timed scoring batches per configuration.
        dicom: also time ``medanomaly score`` on a CT series.
        dicom_slices: slices in that series.
        dicom_repeats: runs of the command, each between two model-only runs.
        cases: measure the configurations; False runs only the DICOM measurement.
        fresh_process: run each configuration in its own process, so that
            its peak memory is its own.
        threads: torch intra-op threads for every measurement, or None for
            torch's default.
    """
    defaults = QUICK_REPEATS if quick else FULL_REPEATS
    warmup = defaults[0] if warmup is None else warmup
    steps = defaults[1] if steps is None else steps
    score_repeats = defaults[2] if score_repeats is None else score_repeats
    check_repeats(warmup, steps, score_repeats)
    resolved = resolve_device(device)
    set_threads(threads)
    result: dict[str, Any] = {"machine": machine_info(resolved, threads), "quick": quick, "cases": []}
    for case in default_cases(quick) if cases else ():
        arguments = {
            "device": str(resolved),
            "warmup": warmup,
            "steps": steps,
            "score_repeats": score_repeats,
            "threads": threads,
        }
        if fresh_process:
            case_result = run_in_subprocess("case", {"case": asdict(case), **arguments})
        else:
            case_result = run_case(case, **arguments)
        result["cases"].append(case_result)
        logger.info(
            "%s: train %.1f images/s, score %.1f images/s",
            case.label,
            case_result["train"]["images_per_s"],
            case_result["score"]["images_per_s"],
        )

    if dicom and not quick:
        arguments = {
            "slices": dicom_slices,
            "device": str(resolved),
            "threads": threads,
            "repeats": dicom_repeats,
        }
        result["dicom"] = (
            run_in_subprocess("dicom", arguments) if fresh_process else measure_dicom_scoring(**arguments)
        )
    result["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    result["targets"] = check_targets(result)
    return result


def check_targets(result: dict[str, Any]) -> dict[str, bool]:
    """Return whether each measured figure meets its target."""
    targets = {}
    for case in result["cases"]:
        targets[f"{case['label']} train >= {PEAK_FRACTION_TARGET:.0%} of peak"] = (
            case["train"]["peak_fraction"] >= PEAK_FRACTION_TARGET
        )
        targets[f"{case['label']} score >= {PEAK_FRACTION_TARGET:.0%} of peak"] = (
            case["score"]["peak_fraction"] >= PEAK_FRACTION_TARGET
        )
    if "dicom" in result:
        targets[f"DICOM end to end <= {DICOM_OVERHEAD_TARGET}x model time"] = (
            result["dicom"]["ratio"] <= DICOM_OVERHEAD_TARGET
        )
    return targets


def _format_columns(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(row[1:], widths[1:])]
        lines.append("  ".join(cells))
    lines.insert(1, "  ".join("-" * width for width in widths))
    return lines


def _format_cases(cases: list[dict[str, Any]]) -> list[str]:
    header = ("configuration", "train img/s", "train GFLOP/s", "train % peak (med)",
              "train convs alone % peak", "score img/s", "score GFLOP/s", "score % peak (med)",
              "score convs alone % peak", "peak GFLOP/s", "peak RSS MiB")
    rows = [header]
    for case in cases:
        train, score = case["train"], case["score"]
        rows.append((
            case["label"],
            f"{train['images_per_s']:.1f}",
            f"{train['gflops_per_s']:.1f}",
            f"{train['peak_fraction']:.0%} ({train['peak_fraction_median']:.0%})",
            _format_convolutions(train),
            f"{score['images_per_s']:.1f}",
            f"{score['gflops_per_s']:.1f}",
            f"{score['peak_fraction']:.0%} ({score['peak_fraction_median']:.0%})",
            _format_convolutions(score),
            f"{case['peak']['gflops_per_s']:.1f}",
            f"{case['memory']['peak_rss_mib']:.0f}",
        ))
    lines = _format_columns(rows)
    lines.append("")
    lines.append(
        "'convs alone': the convolutions of a training step (forward and backward) or of a "
        "scoring batch, replayed with nothing between them. The step or batch would reach this "
        "fraction of the peak if the rest cost nothing; in brackets, the replay's share of its time."
    )
    lines.append("Images/s are the best timed repeat. Medians, and FLOPs counted by FlopCounterMode:")
    for case in cases:
        train, score = case["train"], case["score"]
        lines.append(
            f"  {case['label']}: median train {train['images_per_s_median']:.1f} img/s, "
            f"score {score['images_per_s_median']:.1f} img/s; GFLOP per image: "
            f"train step {train['gflop_per_image']:.3f}, score {score['gflop_per_image']:.3f}"
        )
    return lines


def _format_convolutions(phase: dict[str, Any]) -> str:
    convolutions = phase.get("convolutions_only")
    if not convolutions:
        return "-"
    return f"{convolutions['peak_fraction']:.0%} ({convolutions['share_of_time']:.0%})"


def format_report(result: dict[str, Any]) -> str:
    """Format :func:`run_benchmark` output as a plain-text report."""
    machine = result["machine"]
    load = machine.get("load_average") or []
    load_end = result.get("load_average_end") or []
    lines = [
        f"date            {machine['date']}",
        f"cpu             {machine['cpu_model']}, {machine['cpu_cores']} cores",
        f"torch           {machine['torch_version']}, {machine['torch_threads']} threads "
        f"({'torch default' if machine['torch_threads_default'] else 'set by --threads'}), "
        f"mkldnn {'on' if machine['mkldnn_enabled'] else 'off'}",
        "load average    start " + " ".join(f"{value:.2f}" for value in load)
        + ", end " + " ".join(f"{value:.2f}" for value in load_end),
    ]
    if "gpu" in machine:
        lines.append(f"gpu             {machine['gpu']}")
    lines.append("")

    if result["cases"]:
        lines.extend(_format_cases(result["cases"]))

    dicom = result.get("dicom")
    if dicom:
        lines.append("")
        lines.append(
            f"DICOM: {dicom['slices']} slices {dicom['slice_size']}x{dicom['slice_size']} int16 -> "
            f"1x{dicom['image_size']}x{dicom['image_size']}, batch {dicom['batch_size']}, "
            f"method: {dicom['method']}"
        )
        runs = ", ".join(f"{value:.1f}" for value in dicom["end_to_end_s_all"])
        model_runs = ", ".join(f"{value:.1f}" for value in dicom["model_s_all"])
        lines.append(
            f"  end to end {runs} s, model alone before/after {model_runs} s; "
            f"ratio {dicom['ratio']:.2f} (target <= {DICOM_OVERHEAD_TARGET}, each run against the "
            f"model runs around it), best against best {dicom['ratio_best']:.2f}"
        )
        if dicom.get("ratio_in_command") is not None:
            inside = ", ".join(f"{value:.1f}" for value in dicom["model_in_command_s_all"])
            lines.append(
                f"  within each command run: {inside} s in the scorer, "
                f"ratio {dicom['ratio_in_command']:.2f} (not affected by load changes between runs)"
            )
        lines.append(
            f"  best: end to end {dicom['slices_per_s_end_to_end']:.1f} slices/s, model alone "
            f"{dicom['slices_per_s_model']:.1f} slices/s; decode + preprocess alone {dicom['decode_s']:.1f} s"
        )
        if dicom.get("error"):
            lines.append(f"  medanomaly score failed: {dicom['error']}")

    lines.append("")
    for name, met in result["targets"].items():
        lines.append(f"{'met    ' if met else 'NOT met'}  {name}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1:]))
