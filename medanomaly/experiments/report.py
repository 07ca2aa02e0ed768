"""Results page: ``table1.csv``, ``table1.md`` and their figures, rebuilt from the run records."""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medanomaly import reporting
from medanomaly.experiments.figures import plot_bar_chart, plot_epoch_curves
from medanomaly.experiments.protocol import PAPER_BATCH_SIZE
from medanomaly.experiments.published import (
    AUTHORS_CODE_REFERENCE,
    MODEL_LABELS,
    PUBLISHED_SOURCE,
    published_class_name,
)
from medanomaly.experiments.records import (
    TableRow,
    _latest_per_key,
    _ordered_records,
    aggregate,
    load_records,
)

logger = logging.getLogger(__name__)


CSV_HEADER = (
    "profile",
    "model",
    "abnormal_class",
    "n_seeds",
    "seeds",
    "published_auroc",
    "honest_auroc_mean",
    "honest_auroc_std",
    "paper_auroc_mean",
    "paper_auroc_std",
    "paper_minus_honest",
    "paper_epoch_eval_auroc_mean",
    "honest_epochs",
    "paper_epochs",
)


def _csv_number(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.4f}"


def write_table_csv(rows: Sequence[TableRow], path: str | Path) -> Path:
    """Write one line per table row; blank cells are undefined (no published value, one seed)."""
    lines = [
        (
            row.profile,
            row.model,
            row.abnormal_class,
            len(row.seeds),
            ";".join(str(seed) for seed in row.seeds),
            _csv_number(row.published),
            _csv_number(row.honest_mean),
            _csv_number(row.honest_std),
            _csv_number(row.paper_mean),
            _csv_number(row.paper_std),
            _csv_number(row.gap),
            _csv_number(row.paper_epoch_eval_mean),
            ";".join(str(epoch) for epoch in row.honest_epochs),
            ";".join(str(epoch) for epoch in row.paper_epochs),
        )
        for row in rows
    ]
    return reporting.write_csv(path, CSV_HEADER, lines)


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}" + ("" if number == 1 else "s")


def _cell(mean: float, std: float) -> str:
    if math.isnan(std):
        return f"{mean:.3f}"
    return f"{mean:.3f} ± {std:.3f}"


def _class_label(row: TableRow) -> str:
    if row.abnormal_class == "mean":
        return f"**mean of {len(row.classes)}**"
    name = row.abnormal_class
    alias = published_class_name(name)
    return f"{name} ({alias})" if alias != name else name


def data_sizes(record: Mapping[str, Any]) -> list[int]:
    """Return (training, validation, test normal, test abnormal) image counts of a record."""
    data = record["data"]
    return [data["train_images"], data["val_images"], data["test_normal"], data["test_abnormal"]]


def _describe_profile(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Describe the data, training and hardware behind one profile's records."""
    first = records[0]
    data, settings = first["data"], first["settings"]
    limit = settings["limit"]
    pool = "all 45,000" if limit is None else f"a seeded stratified subset of {limit:,} of the 45,000"

    lines = [
        f"- Training: {data['train_images']:,} normal images ({pool} normal training images, "
        f"minus {data['val_images']:,} held out for validation), {_count(settings['epochs'], 'epoch')}, "
        f"batch {settings['batch_size']}.",
        f"- Test: {data['test_normal']:,} normal and {data['test_abnormal']:,} abnormal images"
        + (
            " (all 15,000)."
            if settings["test_limit"] is None
            else " (seeded stratified subset of the 15,000)."
        ),
        f"- Data: `{data['source']}` ({data['layout']} layout). JPEG re-encodings differ slightly "
        "from the original pixels, so small differences from published numbers are expected "
        "on that account alone.",
    ]

    sizes = {
        json.dumps([record["settings"], data_sizes(record)], sort_keys=True) for record in records
    }
    if len(sizes) > 1:
        lines.append("- WARNING: the records of this profile differ in their settings; see the CSV.")

    minutes = [record["timing"]["total_seconds"] / 60.0 for record in records]
    devices = sorted({record["environment"]["device"] for record in records})
    threads = sorted({record["environment"]["torch_threads"] for record in records})
    loads = [
        record["environment"]["load_average_at_start"]
        for record in records
        if record["environment"].get("load_average_at_start") is not None
    ]
    hardware = f"- Hardware: {', '.join(devices)}"
    # Records written before the processor was recorded have no such field.
    processors = Counter(record["environment"].get("processor") for record in records)
    unrecorded = processors.pop(None, 0)
    if processors:
        named = [f"{name} ({_runs(count)})" for name, count in sorted(processors.items())]
        if unrecorded:
            named.append(f"not recorded for {_runs(unrecorded)}")
        hardware += f" ({'; '.join(named)})"
    hardware += f", torch threads {', '.join(map(str, threads))}"
    if loads:
        hardware += f", load average at start {min(loads):.1f} to {max(loads):.1f}"
    lines.append(
        hardware + f"; {min(minutes):.1f} to {max(minutes):.1f} min per run, both protocols included."
    )
    return lines


def _runs(count: int) -> str:
    return f"{count} run" if count == 1 else f"{count} runs"


def _results_table(rows: Sequence[TableRow]) -> list[str]:
    lines = [
        "| model | abnormal class | published (Table 1) | ours, honest | ours, paper protocol "
        "| paper − honest | seeds |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        published = "n/a" if row.published is None else f"{row.published:.3f}"
        lines.append(
            f"| {MODEL_LABELS.get(row.model, row.model)} | {_class_label(row)} | {published} "
            f"| {_cell(row.honest_mean, row.honest_std)} | {_cell(row.paper_mean, row.paper_std)} "
            f"| {row.gap:+.3f} | {', '.join(str(seed) for seed in row.seeds)} |"
        )
    return lines


def _gap_lines(rows: Sequence[TableRow], epochs: int) -> list[str]:
    """State, per class, how far the paper protocol's figure is from the honest one, and why."""
    class_rows = [row for row in rows if row.abnormal_class != "mean"]
    lines = [
        "| model | abnormal class | paper − honest | batch-norm effect | test-selection effect "
        "| epoch chosen: honest / paper |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for row in class_rows:
        chosen = (
            f"{', '.join(map(str, row.honest_epochs))} / {', '.join(map(str, row.paper_epochs))}"
        )
        lines.append(
            f"| {MODEL_LABELS.get(row.model, row.model)} | {row.abnormal_class} | {row.gap:+.3f} "
            f"| {row.batchnorm_effect:+.3f} | {row.selection_effect:+.3f} | {chosen} |"
        )
    higher = sum(row.gap > 0 for row in class_rows)
    mean_gap = float(np.mean([row.gap for row in class_rows]))
    largest = max(class_rows, key=lambda row: abs(row.gap))
    lines += [
        "",
        f"In {higher} of {len(class_rows)} (model, class) pairs the paper protocol reports a "
        f"higher AUROC than the honest protocol; the mean difference is {mean_gap:+.3f}. The "
        f"largest difference is {largest.gap:+.3f} ({MODEL_LABELS.get(largest.model, largest.model)}, "
        f"{largest.abnormal_class}).",
        "",
        "The difference splits into two parts. The batch-norm effect is the paper figure minus "
        "the eval-mode AUROC of the same weights: it comes from batch statistics of batches "
        "that hold only normal or only abnormal images. The test-selection effect is the "
        "eval-mode AUROC of the epoch the paper protocol picked minus that of the epoch picked "
        f"on validation normals: it comes from choosing the best of {_count(epochs, 'epoch')} "
        "on the test labels.",
    ]
    return lines


def _curve_table(records: Sequence[Mapping[str, Any]]) -> list[str]:
    epochs = max(len(record["epochs"]) for record in records)
    header = "| model | abnormal class | seed | scoring | " + " | ".join(
        f"epoch {epoch}" for epoch in range(1, epochs + 1)
    )
    lines = [header + " |", "| --- | --- | --- | --- |" + " ---: |" * epochs]
    for record in _ordered_records(records):
        label = MODEL_LABELS.get(record["model"], record["model"])
        for key, name in (("paper_auroc", "batch norm train (paper)"), ("eval_auroc", "eval mode")):
            values = {row["epoch"]: row[key] for row in record["epochs"]}
            cells = []
            for epoch in range(1, epochs + 1):
                value = values.get(epoch, math.nan)
                text = "" if math.isnan(value) else f"{value:.3f}"
                if key == "eval_auroc" and epoch == record["honest"]["best_epoch"]:
                    text = f"**{text}**"
                if key == "paper_auroc" and epoch == record["paper"]["best_epoch"]:
                    text = f"**{text}**"
                cells.append(text)
            lines.append(
                f"| {label} | {record['abnormal_class']} | {record['seed']} | {name} | "
                + " | ".join(cells)
                + " |"
            )
    return lines


def _reference_lines() -> list[str]:
    lines = [
        "Measured by this project on the authors' public Skip-GANomaly++ code "
        "(crinex/SkipGANomalyPP) with 4,500 training images, 3,000 test images and 2 CPU "
        "cores, 2026-12-04. Same weights, two scorings:",
        "",
        "| abnormal class | scoring | epoch 1 | epoch 2 | epoch 3 | epoch 4 | epoch 5 |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, curves in AUTHORS_CODE_REFERENCE.items():
        for key, label in (("bn_train", "batch norm train (their evaluation)"), ("eval", "eval mode")):
            cells = " | ".join(f"{value:.3f}" for value in curves[key])
            lines.append(f"| {name} | {label} | {cells} |")
    lines += [
        "",
        "With ship abnormal, their evaluation gives 0.047 after epoch 1 and 0.861 after epoch 3, "
        "while the same weights in eval mode stay between 0.295 and 0.541. The figure follows "
        "batch statistics, not the model.",
    ]
    return lines


def _profile_section(
    profile: str, rows: Sequence[TableRow], records: Sequence[Mapping[str, Any]], files: Mapping[str, str]
) -> list[str]:
    epochs = max(record["settings"]["epochs"] for record in records)
    full = all(r["settings"]["limit"] is None and r["settings"]["test_limit"] is None for r in records)
    scope = (
        "This profile uses the full protocol's data: every training and test image."
        if full
        else "**This is not the full protocol**: it trains on a subset, tests on a subset and "
        "runs fewer epochs, so its numbers are not comparable one to one with Table 1."
    )
    lines = [f"## Profile `{profile}`", "", scope, "", *_describe_profile(records), ""]
    lines += ["### AUROC per abnormal class", "", *_results_table(rows), ""]
    lines += [f"![AUROC per abnormal class, profile {profile}]({files['bars']})", ""]
    lines += ["### Honest versus paper protocol", "", *_gap_lines(rows, epochs), ""]
    lines += [
        "### Test AUROC per epoch",
        "",
        "Bold: the epoch each protocol reports (honest: lowest validation reconstruction "
        "error; paper: highest batch-norm-train test AUROC). The eval-mode row is never used "
        "to choose an epoch.",
        "",
        *_curve_table(records),
        "",
        f"![Test AUROC per epoch, profile {profile}]({files['curves']})",
        "",
    ]
    return lines


def render_markdown(
    rows: Sequence[TableRow],
    records: Sequence[Mapping[str, Any]],
    figure_files: Mapping[str, Mapping[str, str]],
) -> str:
    """Return the results page: per profile the table, the protocol gap and per-epoch curves."""
    lines = [
        "# CIFAR-10 Table 1 reproduction",
        "",
        "Generated by `python pipelines/cifar10_table1.py` from the run records in `runs/`; "
        "rebuild it with `--report-only`. Do not edit by hand.",
        "",
        f"Published numbers: {PUBLISHED_SOURCE}, leave-one-class-out AUROC. The abstract's "
        "\"car\" column is CIFAR-10's automobile class. Table 1's EGBAD and AnoGAN rows are "
        "not reproduced here.",
        "",
        "Two protocols, reported in separate columns:",
        "",
        "- **honest**: the epoch is chosen on held-out normal training images (lowest mean "
        "reconstruction error); the test set is scored once after training, networks in eval "
        "mode, so each score depends on its own image only.",
        "- **paper**: the evaluation of the authors' public code. The test set is unshuffled "
        f"with all normal images first and scored in batches of {PAPER_BATCH_SIZE} with batch "
        "norm in training mode, the test AUROC is computed after every epoch and the best "
        "epoch is reported. Shown for comparison only: batch statistics and test labels "
        "both leak into this figure.",
        "",
        "Mean ± sample standard deviation over seeds where more than one seed ran. A mean "
        "row averages the classes listed above it, and the published mean is over the same "
        "classes.",
        "",
    ]
    for profile in sorted({row.profile for row in rows}):
        profile_rows = [row for row in rows if row.profile == profile]
        profile_records = [record for record in records if record["profile"] == profile]
        lines += _profile_section(profile, profile_rows, profile_records, figure_files[profile])
    lines += ["## Reference: the authors' code under both scorings", "", *_reference_lines(), ""]
    return "\n".join(lines)


def write_report(records_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """Rebuild ``table1.md``, ``table1.csv`` and the figures from every record in ``records_dir``.

    Returns:
        The files written.

    Raises:
        ValueError: ``records_dir`` contains no run record.
    """
    records = load_records(records_dir)
    if not records:
        raise ValueError(
            f"No run records in {records_dir}; run the sweep first (without --report-only)."
        )
    records = list(_latest_per_key(records).values())
    rows = aggregate(records)
    out_dir = Path(out_dir)
    written = [write_table_csv(rows, out_dir / "table1.csv")]
    figure_files: dict[str, dict[str, str]] = {}
    for profile in sorted({record["profile"] for record in records}):
        files = {"bars": f"table1_{profile}.png", "curves": f"table1_curves_{profile}.png"}
        profile_records = [record for record in records if record["profile"] == profile]
        written.append(plot_bar_chart([r for r in rows if r.profile == profile], out_dir / files["bars"]))
        written.append(plot_epoch_curves(profile_records, out_dir / files["curves"]))
        figure_files[profile] = files
    written.append(
        reporting.write_text(out_dir / "table1.md", render_markdown(rows, records, figure_files))
    )
    logger.info("Wrote %s from %d run record(s)", ", ".join(str(p) for p in written), len(records))
    return written
