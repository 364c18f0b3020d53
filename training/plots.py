"""`curves.png`: training and validation loss per epoch, and the task's
quality figure (perplexity for language models) beside it. Headless (Agg).

Epochs are whole numbers on the x axis. An epoch that training left before
its last batch (`--time-budget`, Ctrl-C) is drawn hollow and labelled
"partial". A loss that falls over more than `LOG_SCALE_SPAN` (a toy task
reaching 1e-5) is drawn on a log scale, where its tail stays readable.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from rnnserve.training.files import atomic_write_bytes  # noqa: E402

# Largest / smallest loss beyond which the loss axis is logarithmic.
LOG_SCALE_SPAN = 100.0
_LOSS_KEYS = (("loss", "train"), ("val_loss", "validation"))


def _series(rows, key):
    points = [(row["epoch"], row[key], bool(row.get("partial"))) for row in rows if row.get(key) is not None]
    return [p[0] for p in points], [p[1] for p in points], [p[2] for p in points]


def _label(key):
    return key.replace("val_", "validation ").replace("_", " ")


def _draw(axis, rows, key, label, color):
    x, y, partial = _series(rows, key)
    if not x:
        return []
    line = axis.plot(x, y, marker="o", label=label, color=color)[0]
    hollow = [(xi, yi) for xi, yi, p in zip(x, y, partial) if p]
    if hollow:
        axis.plot(*zip(*hollow), linestyle="none", **_hollow(line.get_color()))
    return y


def _hollow(color):
    return {"marker": "o", "markersize": 9, "markerfacecolor": "white", "markeredgecolor": color}


def _legend(axis, rows, with_lines):
    """The legend: the lines drawn (if `with_lines`) and one "partial epoch" entry."""
    if any(row.get("partial") for row in rows):
        axis.plot([], [], linestyle="none", label="partial epoch", **_hollow("gray"))
    elif not with_lines:
        return
    handles, labels = axis.get_legend_handles_labels()
    if not with_lines:
        handles, labels = handles[-1:], labels[-1:]
    axis.legend(handles, labels, loc="best")


def _epoch_axis(axis, rows):
    axis.set_xlabel("epoch")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    epochs = [row["epoch"] for row in rows]
    if len(set(epochs)) == 1:  # one point: a tick at it, not at 0.96, 0.98, ...
        axis.set_xticks(epochs)
    axis.grid(alpha=0.3)


def draw_curves(metrics, quality_key=None):
    """The figure of `plot_curves` (a `matplotlib.figure.Figure`; close it after use).

    Args:
        metrics: The content of metrics.json.
        quality_key: The row key of the right-hand panel; `None`, or a loss
            already on the left, draws the loss only.
    """
    rows = metrics.get("epochs", [])
    extra = quality_key if quality_key and quality_key not in dict(_LOSS_KEYS) else None
    figure, axes = plt.subplots(1, 2 if extra else 1, figsize=(5.5 * (2 if extra else 1), 4), squeeze=False)
    loss_axis = axes[0][0]
    values = []
    for (key, label), color in zip(_LOSS_KEYS, ("tab:blue", "tab:orange")):
        values += _draw(loss_axis, rows, key, label, color)
    positive = [v for v in values if v > 0]
    if positive and max(positive) / min(positive) > LOG_SCALE_SPAN:
        loss_axis.set_yscale("log")
    language_model = quality_key == "val_perplexity"
    loss_axis.set(ylabel="loss (nats/token)" if language_model else "loss", title="Loss")
    _epoch_axis(loss_axis, rows)
    if values:
        _legend(loss_axis, rows, with_lines=True)
    if extra:
        axis = axes[0][1]
        _draw(axis, rows, extra, _label(extra), "tab:green")
        axis.set(ylabel=_label(extra), title=_label(extra).capitalize())
        _epoch_axis(axis, rows)
        _legend(axis, rows, with_lines=False)
    figure.tight_layout()
    return figure


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
    figure = draw_curves(metrics, quality_key)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())
