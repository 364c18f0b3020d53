"""Every cell honours Keras 3's RNN cell contract: it works inside
`keras.layers.RNN` (sequences, states, go_backwards, stateful, masking) and
`Bidirectional`, serializes, drops out like Keras, and runs mixed precision."""

import keras
import numpy as np
import pytest

from rnnserve.models import CELLS
from tests.models import reference

TOL = 1e-5
CELL_NAMES = sorted(CELLS)


def _rnn(name, units=6, **kwargs):
    return keras.layers.RNN(CELLS[name](units), **kwargs)


def _weights(cell):
    return {w.name: w.numpy().astype("float64") for w in cell.weights}


@pytest.mark.parametrize("name", CELL_NAMES)
def test_go_backwards_reads_the_sequence_from_its_end(name, rng):
    x = rng.standard_normal((3, 5, 4)).astype("float32")
    layer = _rnn(name, return_sequences=True, go_backwards=True)
    outputs = layer(x)
    expected, _ = reference.run(name, x[:, ::-1].astype("float64"), _weights(layer.cell))
    np.testing.assert_allclose(outputs, expected, atol=TOL)


@pytest.mark.parametrize("name", CELL_NAMES)
def test_stateful_layer_carries_state_across_calls_and_resets(name, rng):
    x = rng.standard_normal((2, 8, 4)).astype("float32")
    layer = _rnn(name, stateful=True, return_sequences=True)
    layer.build((2, None, 4))
    first, second = layer(x[:, :4]), layer(x[:, 4:])
    expected, _ = reference.run(name, x.astype("float64"), _weights(layer.cell))
    np.testing.assert_allclose(np.concatenate([first, second], axis=1), expected, atol=TOL)
    layer.reset_state()
    np.testing.assert_allclose(layer(x[:, :4]), expected[:, :4], atol=TOL)


@pytest.mark.parametrize("name", CELL_NAMES)
def test_padded_steps_do_not_change_the_final_state(name, rng):
    x = rng.standard_normal((2, 7, 4)).astype("float32")
    x[1, 4:] = 0.0
    mask = np.ones((2, 7), bool)
    mask[1, 4:] = False
    layer = _rnn(name, return_state=True)
    _, *states = layer(x, mask=mask)
    _, expected = reference.run(name, x[1:, :4].astype("float64"), _weights(layer.cell))
    for ours, theirs in zip(states, expected, strict=True):
        np.testing.assert_allclose(ours[1], theirs[0], atol=TOL)


@pytest.mark.parametrize("name", CELL_NAMES)
def test_bidirectional_concatenates_forward_and_reversed_runs(name, rng):
    x = rng.standard_normal((3, 5, 4)).astype("float32")
    layer = keras.layers.Bidirectional(_rnn(name, return_sequences=True))
    outputs = layer(x)
    forward, _ = reference.run(name, x.astype("float64"), _weights(layer.forward_layer.cell))
    backward, _ = reference.run(name, x[:, ::-1].astype("float64"), _weights(layer.backward_layer.cell))
    np.testing.assert_allclose(outputs, np.concatenate([forward, backward[:, ::-1]], axis=-1), atol=TOL)


@pytest.mark.parametrize("name", CELL_NAMES)
def test_model_save_and_load_keeps_predictions(name, tmp_path, rng):
    inputs = keras.Input((None, 4))
    outputs = keras.layers.Bidirectional(_rnn(name, return_sequences=True))(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3)(outputs))
    x = rng.standard_normal((2, 5, 4)).astype("float32")
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


@pytest.mark.parametrize("name", CELL_NAMES)
def test_config_round_trip_rebuilds_an_identical_cell(name):
    cell = CELLS[name](
        5,
        activation="relu",
        use_bias=False,
        kernel_initializer="he_normal",
        kernel_regularizer="l2",
        recurrent_constraint="non_neg",
        recurrent_dropout=0.25,
        seed=7,
    )
    config = cell.get_config()
    rebuilt = type(cell).from_config(config)
    assert rebuilt.get_config() == config
    assert config["activation"] == "relu" and config["recurrent_dropout"] == 0.25 and config["seed"] == 7


@pytest.mark.parametrize("name", CELL_NAMES)
def test_dropout_masks_are_fixed_per_sequence_and_off_in_inference(name, rng):
    """With dropout, a training run equals the reference run on the masked
    input x ⊙ m with one mask m for all steps; inference equals no dropout."""
    x = rng.standard_normal((3, 6, 4)).astype("float32")
    layer = keras.layers.RNN(CELLS[name](6, dropout=0.5, seed=3), return_sequences=True)
    inference = layer(x, training=False)
    expected, _ = reference.run(name, x.astype("float64"), _weights(layer.cell))
    np.testing.assert_allclose(inference, expected, atol=TOL)

    layer.cell.get_dropout_mask(x[:, 0])  # what RNN.call draws before its loop
    mask = layer.cell._dropout_mask.numpy()  # (B, F), reused by every step
    masked_expected, _ = reference.run(name, (x * mask[:, None, :]).astype("float64"), _weights(layer.cell))
    keep = layer.cell.seed_generator.state.numpy().copy()
    layer.cell.reset_dropout_mask()
    layer.cell.seed_generator.state.assign(keep - [0, 1])  # redraw the very same mask inside call
    training = layer(x, training=True)
    assert set(np.unique(mask)) <= {0.0, 2.0}
    np.testing.assert_allclose(training, masked_expected, atol=TOL)


@pytest.mark.parametrize("name", CELL_NAMES)
def test_recurrent_dropout_changes_training_outputs_only(name, rng):
    x = rng.standard_normal((3, 6, 4)).astype("float32")
    layer = keras.layers.RNN(CELLS[name](6, recurrent_dropout=0.5, seed=3), return_sequences=True)
    inference = layer(x, training=False)
    expected, _ = reference.run(name, x.astype("float64"), _weights(layer.cell))
    np.testing.assert_allclose(inference, expected, atol=TOL)
    assert np.abs(layer(x, training=True).numpy() - expected).max() > 1e-3


@pytest.mark.parametrize("name", CELL_NAMES)
def test_mixed_float16_computes_in_half_and_keeps_float32_weights(name, rng):
    keras.mixed_precision.set_global_policy("mixed_float16")
    inputs = keras.Input((None, 4))
    hidden = _rnn(name, return_sequences=True)(inputs)
    logits = keras.layers.Dense(3, dtype="float32")(hidden)
    model = keras.Model(inputs, logits)
    x = rng.standard_normal((2, 5, 4)).astype("float32")
    out = model(x)
    assert hidden.dtype == "float16" and out.dtype == "float32"
    assert all(w.dtype == "float32" for w in model.weights)
    cell = model.layers[1].cell
    expected, _ = reference.run(name, x.astype("float64"), _weights(cell))
    np.testing.assert_allclose(model.layers[1](x), expected, atol=2e-2)


@pytest.mark.parametrize("name", CELL_NAMES)
def test_wrong_feature_size_names_expected_and_received_shapes(name):
    layer = _rnn(name)
    layer(np.zeros((2, 5, 4), "float32"))
    with pytest.raises(ValueError, match=r"expected axis -1 of input shape to have value 4.*\(2, 3\)"):
        layer(np.zeros((2, 5, 3), "float32"))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"units": 0}, "Expected a positive integer, got 0"),
        ({"units": 4, "dropout": 1.0}, r"`dropout`. Expected a float in \[0, 1\), got 1.0"),
        ({"units": 4, "recurrent_dropout": -0.1}, "`recurrent_dropout`"),
    ],
)
@pytest.mark.parametrize("name", CELL_NAMES)
def test_invalid_arguments_are_named(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        CELLS[name](**kwargs)
