"""Plots and tables for runs and scoring outputs: ROC curve, score histogram,
reconstruction grid, per-image panels and CSV files.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot state, no window),
and every file is written to a temporary name in the target folder and then
renamed, so a reader never sees a half-written file.
"""

from __future__ import annotations

import contextlib
import csv
import os
import tempfile
import textwrap
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Characters per line of a panel title; longer titles (deep file paths) wrap.
PANEL_TITLE_WIDTH = 110


def new_file_mode() -> int:
    """Return the permission bits that ``open`` gives a new file under the current umask.

    ``tempfile.mkstemp`` creates files readable by their owner only, and a rename
    keeps that, so atomic writers set these bits on the temporary file first.
    """
    return 0o666 & ~_current_umask()


def _current_umask() -> int:
    # Linux reports the umask in /proc. Elsewhere it can only be read by setting it,
    # which changes it for every thread for a moment, so the moment uses a strict mask.
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0o077)
    os.umask(umask)
    return umask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` when the block succeeds.

    The temporary file is removed when the block raises.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        yield Path(temporary)
        os.chmod(temporary, new_file_mode())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically and return the path."""
    with atomic_path(path) as temporary:
        temporary.write_text(text)
    return Path(path)


def write_csv(path: str | Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    """Write a CSV file with ``header`` and ``rows`` atomically and return the path."""
    with atomic_path(path) as temporary:
        with open(temporary, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(rows)
    return Path(path)


def _new_figure(width: float, height: float) -> Figure:
    # matplotlib is imported here, not at the top, so the command line starts quickly.
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def _save(figure: Figure, path: str | Path, tight: bool = True) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    # A tight bounding box costs an extra drawing pass to measure the figure.
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=100, bbox_inches="tight" if tight else None)
    return Path(path)


def plot_roc_curve(
    labels: Sequence[int], scores: Sequence[float], path: str | Path, threshold: float | None = None
) -> Path:
    """Plot the ROC curve of ``scores`` against 0/1 ``labels`` and save it as PNG.

    The operating point of ``threshold`` (score above it = abnormal) is marked when given.

    Raises:
        ValueError: when ``labels`` do not contain both classes.
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    labels = np.asarray(labels, dtype=int)
    scores = np.asarray(scores, dtype=float)
    if len(np.unique(labels)) != 2:
        raise ValueError("An ROC curve needs both normal (0) and abnormal (1) labels.")
    fpr, tpr, _ = roc_curve(labels, scores)
    auroc = roc_auc_score(labels, scores)

    figure = _new_figure(4.5, 4.5)
    axes = figure.add_subplot()
    axes.plot(fpr, tpr, color="tab:blue", label=f"AUROC {auroc:.3f}")
    axes.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="chance")
    if threshold is not None:
        predicted = scores > threshold
        sensitivity = predicted[labels == 1].mean()
        false_positive_rate = predicted[labels == 0].mean()
        axes.plot(
            false_positive_rate,
            sensitivity,
            "o",
            color="tab:red",
            label=f"threshold {threshold:.4g}",
        )
    axes.set_xlabel("False-positive rate (1 - specificity)")
    axes.set_ylabel("True-positive rate (sensitivity)")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.01)
    axes.legend(loc="lower right")
    axes.set_title(f"ROC curve (n = {len(labels)})")
    return _save(figure, path)


def plot_score_histogram(
    scores: Sequence[float],
    path: str | Path,
    labels: Sequence[int] | None = None,
    threshold: float | None = None,
) -> Path:
    """Plot score histograms (normal and abnormal apart when labels are known) as PNG.

    Labels of -1 (unknown) are drawn as their own group.
    """
    scores = np.asarray(scores, dtype=float)
    figure = _new_figure(6, 4)
    axes = figure.add_subplot()
    bins = np.histogram_bin_edges(scores, bins=min(50, max(10, len(scores) // 5)))
    if labels is None:
        groups = [("all", scores, "tab:gray")]
    else:
        labels = np.asarray(labels, dtype=int)
        groups = [
            ("normal", scores[labels == 0], "tab:blue"),
            ("abnormal", scores[labels == 1], "tab:red"),
            ("unknown", scores[labels == -1], "tab:gray"),
        ]
    for name, values, color in groups:
        if len(values):
            axes.hist(values, bins=bins, alpha=0.55, color=color, label=f"{name} (n = {len(values)})")
    if threshold is not None:
        axes.axvline(threshold, color="black", linestyle="--", linewidth=1, label="threshold")
    axes.set_xlabel("Anomaly score")
    axes.set_ylabel("Images")
    axes.legend()
    return _save(figure, path)


def _to_display(image: np.ndarray) -> tuple[np.ndarray, str | None]:
    """Return an (H, W) or (H, W, 3) array for imshow and the colormap to use."""
    image = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
    if image.shape[0] == 1:
        return image[0], "gray"
    return np.transpose(image[:3], (1, 2, 0)), None  # (C, H, W) -> (H, W, C)


def plot_reconstruction_grid(
    images: np.ndarray,
    reconstructions: np.ndarray,
    residuals: np.ndarray,
    path: str | Path,
    titles: Sequence[str] | None = None,
) -> Path:
    """Save a grid with one column per image: input, reconstruction, residual heat map.

    Args:
        images: (N, C, H, W) inputs in [0, 1].
        reconstructions: (N, C, H, W) generator outputs in [0, 1].
        residuals: (N, 1, H, W) or (N, H, W) per-pixel residuals.
        path: PNG file to write.
        titles: one short title per column, for example the score.
    """
    count = len(images)
    if count == 0:
        raise ValueError("plot_reconstruction_grid needs at least one image.")
    residuals = np.asarray(residuals, dtype=np.float32).reshape(count, *images.shape[-2:])
    vmax = float(np.percentile(residuals, 99.5)) or 1.0
    figure = _new_figure(1.6 * count, 5)
    rows = ("input", "reconstruction", "residual")
    for column in range(count):
        for row, name in enumerate(rows):
            axes = figure.add_subplot(3, count, row * count + column + 1)
            if row == 2:
                axes.imshow(residuals[column], cmap="inferno", vmin=0.0, vmax=vmax)
            else:
                source = images if row == 0 else reconstructions
                array, cmap = _to_display(source[column])
                axes.imshow(array, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
            axes.set_xticks([])
            axes.set_yticks([])
            if column == 0:
                axes.set_ylabel(name, fontsize=8)
            if row == 0 and titles is not None:
                axes.set_title(titles[column], fontsize=7)
    return _save(figure, path)


def save_panel(
    image: np.ndarray,
    reconstruction: np.ndarray,
    residual: np.ndarray,
    path: str | Path,
    title: str = "",
) -> Path:
    """Save one image's panel: input, reconstruction and residual heat map side by side.

    Args:
        image: (C, H, W) input in [0, 1].
        reconstruction: (C, H, W) reconstruction in [0, 1].
        residual: (1, H, W) or (H, W) residual map.
        path: PNG file to write.
        title: figure title, for example path, slice index and score.
    """
    residual = np.asarray(residual, dtype=np.float32).reshape(image.shape[-2:])
    # Fixed margins in place of a tight bounding box, whose extra drawing pass
    # made each panel about 25 % slower. `medanomaly score` saves one per flagged slice.
    title_lines = textwrap.wrap(title, PANEL_TITLE_WIDTH)
    extra_lines = max(len(title_lines) - 1, 0)
    figure = _new_figure(7.6, 2.9 + 0.15 * extra_lines)
    figure.subplots_adjust(left=0.01, right=0.93, bottom=0.02, top=0.84 - 0.04 * extra_lines, wspace=0.08)
    input_array, cmap = _to_display(image)
    recon_array, _ = _to_display(reconstruction)
    for column, (name, array) in enumerate((("input", input_array), ("reconstruction", recon_array))):
        axes = figure.add_subplot(1, 3, column + 1)
        axes.imshow(array, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
        axes.set_title(name, fontsize=9)
        axes.axis("off")
    axes = figure.add_subplot(1, 3, 3)
    heat = axes.imshow(residual, cmap="inferno", vmin=0.0, vmax=float(residual.max()) or 1.0, interpolation="nearest")
    axes.set_title("residual", fontsize=9)
    axes.axis("off")
    figure.colorbar(heat, ax=axes, fraction=0.046, pad=0.04)
    if title_lines:
        figure.suptitle("\n".join(title_lines), fontsize=8)
    return _save(figure, path, tight=False)
