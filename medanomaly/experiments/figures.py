"""PNG charts of the results page and of a single run."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from medanomaly import reporting
from medanomaly.experiments.published import MODEL_LABELS, published_class_name, sort_models
from medanomaly.experiments.records import TableRow, _ordered_records


def _save_figure(figure: Figure, path: Path) -> Path:
    FigureCanvasAgg(figure)
    with reporting.atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=100, bbox_inches="tight")
    return path


def plot_bar_chart(rows: Sequence[TableRow], path: str | Path) -> Path:
    """Plot published, honest and paper AUROC per class, one panel per model, as PNG."""
    models = sort_models(row.model for row in rows)
    groups = max(sum(row.model == model for row in rows) for model in models)
    figure = Figure(figsize=(max(6.0, 1.1 * groups + 3.0), 2.8 * len(models) + 0.6), layout="constrained")
    series = (
        ("published", "0.6", lambda row: row.published, lambda row: math.nan),
        ("ours, honest", "tab:blue", lambda row: row.honest_mean, lambda row: row.honest_std),
        ("ours, paper protocol", "tab:orange", lambda row: row.paper_mean, lambda row: row.paper_std),
    )
    width = 0.27
    for index, model in enumerate(models):
        axes = figure.add_subplot(len(models), 1, index + 1)
        model_rows = [row for row in rows if row.model == model]
        positions = np.arange(len(model_rows))
        for offset, (name, color, value, spread) in enumerate(series):
            heights = [value(row) if value(row) is not None else math.nan for row in model_rows]
            errors = [0.0 if math.isnan(spread(row)) else spread(row) for row in model_rows]
            axes.bar(
                positions + (offset - 1) * width, heights, width, yerr=errors, label=name, color=color
            )
        axes.axhline(0.5, color="0.3", linestyle=":", linewidth=1)
        axes.set_xticks(positions, [published_class_name(row.abnormal_class) for row in model_rows])
        axes.set_ylim(0.0, 1.05)
        axes.set_ylabel("AUROC")
        axes.set_title(MODEL_LABELS.get(model, model))
    handles, labels = figure.axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside upper center", ncol=3, fontsize=8)
    return _save_figure(figure, Path(path))


def plot_epoch_curves(records: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Plot test AUROC per epoch (batch norm train and eval mode) for every run, as PNG.

    One panel per (model, abnormal class); seeds share a panel.
    """
    records = _ordered_records(records)
    panels: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for record in records:
        panels.setdefault((record["model"], record["abnormal_class"]), []).append(record)
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure = Figure(figsize=(4.2 * columns, 3.0 * rows + 0.5), layout="constrained")
    for index, ((model, name), runs) in enumerate(panels.items()):
        axes = figure.add_subplot(rows, columns, index + 1)
        for run in runs:
            _draw_run_curves(axes, run, label_seed=len(runs) > 1)
        axes.set_title(f"{MODEL_LABELS.get(model, model)}, {name}", fontsize=9)
    handles, labels = figure.axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside upper center", ncol=3, fontsize=8)
    return _save_figure(figure, Path(path))


def _draw_run_curves(axes: Any, record: Mapping[str, Any], label_seed: bool = False) -> None:
    epochs = [row["epoch"] for row in record["epochs"]]
    suffix = f" (seed {record['seed']})" if label_seed else ""

    axes.plot(
        epochs,
        [row["paper_auroc"] for row in record["epochs"]],
        "o-",
        color="tab:orange",
        label="batch norm train (paper)" + suffix,
    )
    axes.plot(
        epochs,
        [row["eval_auroc"] for row in record["epochs"]],
        "s--",
        color="tab:blue",
        label="eval mode" + suffix,
    )
    axes.axvline(
        record["honest"]["best_epoch"],
        color="tab:blue",
        linewidth=0.8,
        alpha=0.5,
        label="epoch chosen on validation (honest)" if not suffix else None,
    )

    axes.axhline(0.5, color="0.3", linestyle=":", linewidth=1)
    last = max(epochs, default=1)
    axes.set_xlim(0.5, last + 0.5)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1, steps=[1, 2, 5, 10]))
    axes.set_ylim(0.0, 1.0)
    axes.set_xlabel("epoch")
    axes.set_ylabel("test AUROC")


def plot_run_curves(record: Mapping[str, Any], path: str | Path) -> Path:
    """Plot one run's per-epoch test AUROC; the vertical line marks the honest epoch."""
    figure = Figure(figsize=(5.0, 3.4))
    axes = figure.add_subplot()
    _draw_run_curves(axes, record)
    axes.set_title(f"{MODEL_LABELS.get(record['model'], record['model'])}, {record['abnormal_class']}")
    axes.legend(fontsize=7)
    return _save_figure(figure, Path(path))
