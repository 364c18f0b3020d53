"""models/: the recurrent cells, the torch-shaped `Recurrent` layer, weight
import from PyTorch and Keras, and the model builders. Keras layers only: no
I/O, and nothing else of the project is imported here.
"""

from rnnserve.models.builders import (
    BUILDERS,
    build_classifier,
    build_conditioned_generator,
    build_language_model,
    build_regressor,
    build_seq2seq,
    greedy_decode,
)
from rnnserve.models.cells import (
    CELLS,
    CoupledLSTMCell,
    GRUCell,
    LSTMCell,
    PeepholeLSTMCell,
    RecurrentCell,
    SimpleRNNCell,
    get_cell_class,
)
from rnnserve.models.recurrent import Recurrent
from rnnserve.models.runner import run_language_model
from rnnserve.models.state import state_layout, state_size

__all__ = [
    "BUILDERS",
    "CELLS",
    "CoupledLSTMCell",
    "GRUCell",
    "LSTMCell",
    "PeepholeLSTMCell",
    "Recurrent",
    "RecurrentCell",
    "SimpleRNNCell",
    "build_classifier",
    "build_conditioned_generator",
    "build_language_model",
    "build_regressor",
    "build_seq2seq",
    "get_cell_class",
    "greedy_decode",
    "run_language_model",
    "state_layout",
    "state_size",
]
