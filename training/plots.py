"""`curves.png`: training and validation loss per epoch, and the task's
quality figure (perplexity for language models) beside it. Headless (Agg).
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rnnserve.training.files import atomic_write_bytes  # noqa: E402


def _series(rows, key):
    points = [(row["epoch"], row[key]) for row in rows if row.get(key) is not None]
    return [p[0] for p in points], [p[1] for p in points]


def plot_curves(metrics, path, quality_key=None):
    """Draws the per-epoch curves of `metrics` ("epochs" rows) into a PNG.

    Args:
        metrics: The content of metrics.json.
        path: Where to write the PNG (atomically).
        quality_key: The row key of the right-hand panel, e.g.
            `"val_perplexity"`; `None` draws the loss only.

    Example:

    >>> plot_curves({"epochs": [{"epoch": 1, "loss": 2.0, "val_loss": 2.1}]}, "curves.png")
    """
    rows = metrics.get("epochs", [])
    panels = 2 if quality_key else 1
    figure, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4), squeeze=False)
    loss_axis = axes[0][0]
    for key, label in (("loss", "train"), ("val_loss", "validation")):
        x, y = _series(rows, key)
        if x:
            loss_axis.plot(x, y, marker="o", label=label)
    loss_axis.set(
        xlabel="epoch",
        ylabel="loss (nats/token)" if quality_key == "val_perplexity" else "loss",
        title="Loss",
    )
    loss_axis.grid(alpha=0.3)
    loss_axis.legend()
    if quality_key:
        x, y = _series(rows, quality_key)
        axes[0][1].plot(x, y, marker="o", color="tab:green")
        axes[0][1].set(
            xlabel="epoch", ylabel=quality_key.replace("_", " "), title=quality_key.replace("_", " ")
        )
        axes[0][1].grid(alpha=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())
