"""Which path `Recurrent` takes: the fused kernel exactly when the call is
eligible (the rule in `models/fused/__init__.py`), the cell otherwise, and
what `implementation="fused"` / `"cell"` force."""

import keras
import numpy as np
import pytest

from rnnserve.models import CELLS, LSTMCell, Recurrent, build_language_model
from rnnserve.models import fused as fused_module
from rnnserve.models.fused import call_ineligibility


@pytest.fixture
def fused_calls(monkeypatch):
    """Counts the layer-directions run through the fused kernel."""
    calls = []
    real = fused_module.run_fused

    def spy(cell, *args, **kwargs):
        calls.append(cell.name)
        return real(cell, *args, **kwargs)

    monkeypatch.setattr(fused_module, "run_fused", spy)
    return calls


X = np.zeros((2, 5, 3), "float32")


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_every_cell_runs_fused_by_default_in_every_direction(cell, fused_calls):
    Recurrent(cell, 4, num_layers=2, bidirectional=True)(X)
    assert fused_calls == ["cell_l0", "cell_l0_reverse", "cell_l1", "cell_l1_reverse"]


def test_a_mask_takes_the_cell_path(fused_calls):
    layer = Recurrent("lstm", 4)
    layer(X, mask=np.ones((2, 5), bool))
    assert fused_calls == []
    assert not layer.uses_fused(0, mask=np.ones((2, 5), bool))


def test_recurrent_dropout_takes_the_cell_path_only_in_training(fused_calls):
    layer = Recurrent("gru", 4, recurrent_dropout=0.3)
    layer(X, training=True)
    assert fused_calls == []
    layer(X, training=False)
    layer(X)  # training=None: Keras applies no dropout either
    assert fused_calls == ["cell_l0", "cell_l0"]


@pytest.mark.parametrize(
    "kwargs, reason",
    [
        ({"recurrent_activation": "hard_sigmoid"}, "recurrent_activation 'hard_sigmoid'"),
        ({"activation": "softsign"}, "activation 'softsign'"),
    ],
)
def test_unsupported_activations_take_the_cell_path(kwargs, reason, fused_calls):
    layer = Recurrent("lstm", 4, **kwargs)
    layer(X)
    assert fused_calls == []
    assert reason in call_ineligibility(layer.cells[0])


def test_a_cell_subclass_takes_the_cell_path(fused_calls):
    @keras.saving.register_keras_serializable(package="rnnserve_tests")
    class ScaledLSTMCell(LSTMCell):
        def call(self, inputs, states, training=False):
            h, states = super().call(inputs, states, training)
            return 2.0 * h, states

    layer = Recurrent(ScaledLSTMCell, 4)
    layer(X)
    assert fused_calls == []
    assert "ScaledLSTMCell has no fused kernel" in call_ineligibility(layer.cells[0])


def test_implementation_cell_never_runs_fused(fused_calls):
    Recurrent("lstm", 4, implementation="cell", bidirectional=True)(X)
    assert fused_calls == []


def test_stateful_layers_and_language_models_run_fused(fused_calls):
    stateful = Recurrent("lstm", 4, stateful=True)
    stateful.build((2, None, 3))
    stateful(X)
    model = build_language_model(11, units=4, num_layers=2, embedding_dim=3)
    model.predict(np.ones((2, 5), "int32"), verbose=0)
    assert len(fused_calls) >= 3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"recurrent_activation": "hard_sigmoid"}, "is not one of tanh, sigmoid, relu, linear"),
        ({"recurrent_dropout": 0.2}, "recurrent_dropout applies in training"),
    ],
)
def test_forcing_fused_on_an_ineligible_layer_says_why(kwargs, message):
    with pytest.raises(
        ValueError, match=f"implementation='fused' but cannot run its fused kernel: .*{message}"
    ):
        Recurrent("gru", 4, implementation="fused", **kwargs)


def test_forcing_fused_with_a_mask_says_why():
    layer = Recurrent("gru", 4, implementation="fused")
    with pytest.raises(ValueError, match="a mask was passed. Use implementation='auto'"):
        layer(X, mask=np.ones((2, 5), bool))


def test_invalid_implementation_is_named():
    with pytest.raises(ValueError, match=r"`implementation`. Expected one of \('auto', 'fused', 'cell'\)"):
        Recurrent("lstm", 4, implementation="cudnn")


@pytest.mark.parametrize("implementation", ["auto", "fused", "cell"])
def test_implementation_round_trips_through_config(implementation):
    layer = Recurrent("gru", 4, implementation=implementation)
    config = layer.get_config()
    assert config["implementation"] == implementation
    assert Recurrent.from_config(config).get_config() == config
