"""Metric recording (namespaced keys, as in stable-baselines3's logger) and the learning-curve plot."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path


class MetricsLogger:
    """Collects `record(key, value)` calls and keeps one row per `dump(step)`."""

    def __init__(self) -> None:
        self.current: dict[str, float] = {}
        self.rows: list[dict[str, float]] = []

    def record(self, key: str, value: float) -> None:
        self.current[key] = float(value)

    def record_many(self, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.record(key, value)

    def dump(self, step: int) -> dict[str, float]:
        row = {"timesteps": float(step), **self.current}
        self.rows.append(row)
        self.current = {}
        return row


def plot_curve(curve: Sequence[dict[str, float]], path: Path, title: str) -> None:
    """Draw true return against labels used and against env steps, and reward-model accuracy against labels."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    labels = [point["labels/count"] for point in curve]
    returns = [point["env/true_return"] for point in curve]
    fig, (ax_labels, ax_steps, ax_accuracy) = plt.subplots(1, 3, figsize=(14, 4))
    ax_labels.plot(labels, returns, marker="o", color="tab:blue")
    ax_labels.set(xlabel="labels used", ylabel="true return (mean of eval episodes)", title="Policy vs labels")
    ax_steps.plot([point["env/timesteps"] for point in curve], returns, marker="o", color="tab:blue")
    ax_steps.set(xlabel="env steps", title="Policy vs env steps")
    ax_steps.xaxis.set_major_formatter(lambda value, _: f"{value / 1000:g}k")
    accuracy = [(n, point.get("reward/val_accuracy", math.nan)) for n, point in zip(labels, curve, strict=True)]
    accuracy = [(n, a) for n, a in accuracy if a is not None and not math.isnan(a)]
    if accuracy:
        ax_accuracy.plot(*zip(*accuracy, strict=True), marker="o", color="tab:green")
    ax_accuracy.set(xlabel="labels used", ylabel="validation accuracy", title="Reward model", ylim=(0.0, 1.05))
    ax_accuracy.axhline(0.5, color="grey", linestyle=":", linewidth=1)
    for ax in (ax_labels, ax_steps, ax_accuracy):
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
