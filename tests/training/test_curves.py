"""curves.png reads as a user expects: whole-number epochs, the partial
last epoch marked, a log loss axis when the loss spans decades, and no
panel twice. Checked on the matplotlib figure that is saved."""

import matplotlib.pyplot as plt
import pytest

from rnnserve.training.plots import draw_curves, plot_curves

# The hello task's shape: 0.2 after the first epoch, then about 1e-5.
HELLO_LIKE = {
    "epochs": [{"epoch": e, "loss": 0.2 if e == 1 else 2e-5 / e, "partial": False} for e in range(1, 16)]
}
LANGUAGE_MODEL = {
    "epochs": [
        {"epoch": 1, "loss": 3.4, "val_loss": 3.2, "val_perplexity": 24.5, "partial": False},
        {"epoch": 2, "loss": 2.9, "val_loss": 2.8, "val_perplexity": 16.4, "partial": False},
        {"epoch": 3, "loss": 2.7, "val_loss": 2.7, "val_perplexity": 14.9, "partial": True, "batches": 40},
    ]
}


@pytest.fixture
def figure():
    figures = []
    yield lambda *args: figures.append(draw_curves(*args)) or figures[-1]
    for f in figures:
        plt.close(f)


def _visible_ticks(axis):
    low, high = axis.get_xlim()
    return [t for t in axis.get_xticks() if low <= t <= high]


@pytest.mark.parametrize("metrics", [HELLO_LIKE, LANGUAGE_MODEL, {"epochs": LANGUAGE_MODEL["epochs"][:1]}])
def test_epoch_ticks_are_whole_numbers(metrics, figure):
    for axis in figure(metrics, "val_perplexity").axes:
        ticks = _visible_ticks(axis)
        assert ticks and all(float(t).is_integer() for t in ticks), ticks


def test_a_loss_spanning_decades_is_drawn_on_a_log_axis(figure):
    assert HELLO_LIKE["epochs"][0]["loss"] / HELLO_LIKE["epochs"][-1]["loss"] > 1000
    assert figure(HELLO_LIKE, "accuracy").axes[0].get_yscale() == "log"
    assert figure(LANGUAGE_MODEL, "val_perplexity").axes[0].get_yscale() == "linear"


def test_the_partial_last_epoch_is_drawn_hollow_and_named_in_the_legend(figure):
    loss_axis, quality_axis = figure(LANGUAGE_MODEL, "val_perplexity").axes
    for axis in (loss_axis, quality_axis):
        hollow = [
            line
            for line in axis.get_lines()
            if line.get_markerfacecolor() == "white" and len(line.get_xdata())
        ]
        assert hollow and all(list(line.get_xdata()) == [3] for line in hollow)
        assert "partial epoch" in [text.get_text() for text in axis.get_legend().get_texts()]
    complete = {"epochs": [dict(row, partial=False) for row in LANGUAGE_MODEL["epochs"]]}
    labels = [t.get_text() for t in figure(complete, "val_perplexity").axes[0].get_legend().get_texts()]
    assert labels == ["train", "validation"]


def test_a_quality_figure_that_is_the_validation_loss_gets_no_second_panel(figure):
    assert len(figure(LANGUAGE_MODEL, "val_loss").axes) == 1
    assert len(figure(LANGUAGE_MODEL, "val_perplexity").axes) == 2


def test_plot_curves_writes_a_png(tmp_path):
    plot_curves(LANGUAGE_MODEL, tmp_path / "curves.png", "val_perplexity")
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
