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
    """Draw true return and reward-model accuracy against labels used, into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    labels = [point["labels"] for point in curve]
    fig, (ax_return, ax_accuracy) = plt.subplots(1, 2, figsize=(10, 4))
    ax_return.plot(labels, [point["true_return"] for point in curve], marker="o", color="tab:blue")
    ax_return.set(xlabel="labels used", ylabel="true return (mean over eval episodes)", title="Policy")
    ax_return.grid(alpha=0.3)
    accuracy = [(point["labels"], point.get("reward_accuracy", math.nan)) for point in curve]
    accuracy = [(n, a) for n, a in accuracy if not math.isnan(a)]
    if accuracy:
        ax_accuracy.plot(*zip(*accuracy, strict=True), marker="o", color="tab:green")
    ax_accuracy.set(xlabel="labels used", ylabel="validation accuracy", title="Reward model", ylim=(0.0, 1.05))
    ax_accuracy.axhline(0.5, color="grey", linestyle=":", linewidth=1)
    ax_accuracy.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
