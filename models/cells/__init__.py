"""The five recurrent cells, and their names as `Recurrent(cell=...)` takes them.

| name            | class              | gates (kernel column order) | states |
|-----------------|--------------------|-----------------------------|--------|
| "rnn"           | `SimpleRNNCell`    | h                           | h      |
| "lstm"          | `LSTMCell`         | i, f, c, o                  | h, c   |
| "gru"           | `GRUCell`          | z, r, h                     | h      |
| "peephole_lstm" | `PeepholeLSTMCell` | i, f, c, o (+ peepholes)    | h, c   |
| "coupled_lstm"  | `CoupledLSTMCell`  | i, c, o                     | h, c   |
"""

from rnnserve.models.cells.base import GatedCell, RecurrentCell
from rnnserve.models.cells.coupled_lstm import COUPLED_LSTM_GATES, CoupledLSTMCell
from rnnserve.models.cells.gru import GRU_GATES, GRUCell
from rnnserve.models.cells.lstm import LSTM_GATES, LSTMCell
from rnnserve.models.cells.peephole_lstm import PEEPHOLE_WEIGHTS, PeepholeLSTMCell
from rnnserve.models.cells.simple_rnn import SIMPLE_RNN_GATES, SimpleRNNCell

CELLS = {
    "rnn": SimpleRNNCell,
    "lstm": LSTMCell,
    "gru": GRUCell,
    "peephole_lstm": PeepholeLSTMCell,
    "coupled_lstm": CoupledLSTMCell,
}


def get_cell_class(cell):
    """Returns the cell class for a name of `CELLS` or a `RecurrentCell` class.

    Example:

    >>> get_cell_class("gru")
    <class 'rnnserve.models.cells.gru.GRUCell'>
    """
    if isinstance(cell, type) and issubclass(cell, RecurrentCell):
        return cell
    if isinstance(cell, str) and cell in CELLS:
        return CELLS[cell]
    raise ValueError(
        "Received an invalid value for argument `cell`. Expected one of "
        f"{sorted(CELLS)} or a RecurrentCell subclass, got {cell!r}."
    )


def cell_name(cell_class):
    """The `CELLS` name of a cell class, or None for a class not listed there."""
    for name, cls in CELLS.items():
        if cls is cell_class:
            return name
    return None


__all__ = [
    "CELLS",
    "COUPLED_LSTM_GATES",
    "CoupledLSTMCell",
    "GRUCell",
    "GRU_GATES",
    "GatedCell",
    "LSTMCell",
    "LSTM_GATES",
    "PEEPHOLE_WEIGHTS",
    "PeepholeLSTMCell",
    "RecurrentCell",
    "SIMPLE_RNN_GATES",
    "SimpleRNNCell",
    "cell_name",
    "get_cell_class",
]
