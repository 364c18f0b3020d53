"""`Recurrent`: torch-shaped stacking, directions, dropout, state and
serialization (its parity with torch is in test_torch_parity.py)."""

import keras
import numpy as np
import pytest

from rnnserve.models import CELLS, Recurrent
from tests.models import reference

TOL = 1e-5


def _cell_weights(layer, index):
    return {w.name: w.numpy().astype("float64") for w in layer.cells[index].weights}


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_two_bidirectional_layers_equal_the_reference_stack(cell, rng):
    """Layer 1 reads [forward ; reversed-backward] of layer 0; h_n is indexed
    layer·D + direction."""
    x = rng.standard_normal((2, 5, 3)).astype("float32")
    layer = Recurrent(cell, 4, num_layers=2, bidirectional=True)
    outputs, final = layer(x)
    h_n = final[0] if isinstance(final, tuple) else final
    inputs = x.astype("float64")
    for depth in range(2):
        forward, (h_f, *_) = reference.run(cell, inputs, _cell_weights(layer, 2 * depth))
        backward, (h_b, *_) = reference.run(cell, inputs[:, ::-1], _cell_weights(layer, 2 * depth + 1))
        np.testing.assert_allclose(h_n[2 * depth], h_f, atol=TOL)
        np.testing.assert_allclose(h_n[2 * depth + 1], h_b, atol=TOL)
        inputs = np.concatenate([forward, backward[:, ::-1]], axis=-1)
    np.testing.assert_allclose(outputs, inputs, atol=TOL)


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_step_token_by_token_equals_the_reference_stack(cell, rng):
    """`step` is one position without a time axis: fed x_1 … x_T one at a
    time, carrying its states, two stacked layers give the reference's
    outputs and final states."""
    x = rng.standard_normal((2, 5, 3)).astype("float32")
    layer = Recurrent(cell, 4, num_layers=2)
    layer(x)  # build
    states = [[np.zeros((2, 4), "float32")] * len(layer.state_names)] * 2
    outputs = []
    for t in range(5):
        output, states = layer.step(x[:, t], states)
        outputs.append(output)
    inputs, finals = x.astype("float64"), []
    for depth in range(2):
        inputs, final = reference.run(cell, inputs, _cell_weights(layer, depth))
        finals.append(final)
    np.testing.assert_allclose(np.stack(outputs, axis=1), inputs, atol=TOL)
    for depth in range(2):
        for got, want in zip(states[depth], finals[depth]):
            np.testing.assert_allclose(got, want, atol=TOL)


def test_step_of_a_bidirectional_stack_equals_the_reference(rng):
    """Both directions of one position read the same single input, from
    their own initial states (sub-layer index = layer·D + direction)."""
    x = rng.standard_normal((2, 3)).astype("float32")
    h0, c0 = (rng.standard_normal((4, 2, 5)).astype("float32") for _ in range(2))
    layer = Recurrent("lstm", 5, num_layers=2, bidirectional=True)
    layer(x[:, None])  # build
    stepped, states = layer.step(x, [[h0[i], c0[i]] for i in range(4)])
    inputs = x[:, None].astype("float64")
    for depth in range(2):
        outputs = []
        for direction in range(2):
            index = 2 * depth + direction
            output, (h, c) = reference.run(
                "lstm", inputs, _cell_weights(layer, index), h0[index].astype("float64"), c0[index]
            )
            np.testing.assert_allclose(states[index][0], h, atol=TOL)
            np.testing.assert_allclose(states[index][1], c, atol=TOL)
            outputs.append(output)
        inputs = np.concatenate(outputs, axis=-1)
    np.testing.assert_allclose(stepped, inputs[:, 0], atol=TOL)


def test_time_major_is_the_transpose_of_batch_major(rng):
    x = rng.standard_normal((2, 5, 3)).astype("float32")
    batch_major = Recurrent("lstm", 4, num_layers=2)
    time_major = Recurrent("lstm", 4, num_layers=2, time_major=True)
    batch_major(x)
    time_major(x.transpose(1, 0, 2))
    time_major.set_weights(batch_major.get_weights())
    out_b, (h_b, c_b) = batch_major(x)
    out_t, (h_t, c_t) = time_major(x.transpose(1, 0, 2))
    np.testing.assert_allclose(out_t, np.transpose(out_b, (1, 0, 2)), atol=TOL)
    np.testing.assert_allclose(h_t, h_b, atol=TOL)
    np.testing.assert_allclose(c_t, c_b, atol=TOL)


def test_dropout_applies_between_layers_only_and_only_in_training(rng):
    x = rng.standard_normal((4, 6, 3)).astype("float32")
    one_layer = Recurrent("gru", 8, dropout=0.5, seed=1)
    np.testing.assert_array_equal(one_layer(x, training=True)[0], one_layer(x, training=False)[0])
    two_layers = Recurrent("gru", 8, num_layers=2, dropout=0.5, seed=1)
    inference = two_layers(x, training=False)[0]
    no_dropout = Recurrent("gru", 8, num_layers=2)
    no_dropout(x)
    no_dropout.set_weights(two_layers.get_weights())
    np.testing.assert_allclose(inference, no_dropout(x)[0], atol=TOL)
    assert np.abs(two_layers(x, training=True)[0].numpy() - inference.numpy()).max() > 1e-3


@pytest.mark.parametrize("cell", ["rnn", "lstm", "coupled_lstm"])
def test_stateful_halves_equal_the_whole_sequence_and_reset_zeroes(cell, rng):
    x = rng.standard_normal((3, 8, 2)).astype("float32")
    stateless = Recurrent(cell, 5, num_layers=2)
    whole, whole_state = stateless(x)
    stateful = Recurrent(cell, 5, num_layers=2, stateful=True)
    stateful.build((3, None, 2))
    for mine, theirs in zip(stateful.trainable_weights, stateless.trainable_weights, strict=True):
        mine.assign(theirs)
    first, _ = stateful(x[:, :4])
    second, second_state = stateful(x[:, 4:])
    np.testing.assert_allclose(np.concatenate([first, second], axis=1), whole, atol=TOL)
    for a, b in zip(np.atleast_3d(second_state), np.atleast_3d(whole_state)):
        np.testing.assert_allclose(a, b, atol=TOL)
    stateful.reset_state()
    np.testing.assert_allclose(stateful(x[:, :4])[0], whole[:, :4], atol=TOL)


def test_stateful_without_static_batch_is_a_clear_error():
    with pytest.raises(ValueError, match="needs a static batch size"):
        Recurrent("lstm", 4, stateful=True).build((None, 5, 3))


def test_mask_from_embedding_zeroes_padded_outputs(rng):
    tokens = keras.Input((None,), dtype="int32")
    embedded = keras.layers.Embedding(10, 3, mask_zero=True)(tokens)
    outputs, _ = Recurrent("lstm", 4, bidirectional=True)(embedded)
    model = keras.Model(tokens, outputs)
    batch = np.array([[3, 4, 5, 0, 0], [1, 2, 3, 4, 5]], "int32")
    result = model(batch).numpy()
    assert np.all(result[0, 3:] == 0.0)
    assert np.all(np.abs(result[1]) > 0.0)


def test_serialization_round_trip_keeps_config_and_predictions(tmp_path, rng):
    inputs = keras.Input((None, 3))
    outputs, (h_n, _) = Recurrent(
        "peephole_lstm",
        4,
        num_layers=2,
        bidirectional=True,
        dropout=0.2,
        recurrent_dropout=0.1,
        activation="relu",
        seed=5,
    )(inputs)
    model = keras.Model(inputs, [outputs, h_n])
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.layers[1].get_config() == model.layers[1].get_config()
    x = rng.standard_normal((2, 6, 3)).astype("float32")
    for a, b in zip(loaded.predict(x, verbose=0), model.predict(x, verbose=0), strict=True):
        np.testing.assert_array_equal(a, b)


def test_functional_output_shapes_are_torch_shaped():
    outputs, (h_n, c_n) = Recurrent("lstm", 7, num_layers=3, bidirectional=True)(
        keras.Input((11, 5), batch_size=4)
    )
    assert outputs.shape == (4, 11, 14)
    assert h_n.shape == c_n.shape == (6, 4, 7)


@pytest.mark.parametrize(
    "initial_state, message",
    [
        (np.zeros((2, 3, 4), "float32"), r"expects initial_state \(h_0, c_0\), got 1 tensor"),
        (
            (np.zeros((1, 3, 4), "float32"),) * 2,
            r"h_0 must have shape \(L·D, B, H\) = \(2, B, 4\), got \(1, 3, 4\)",
        ),
        ((np.zeros((2, 3, 5), "float32"),) * 2, r"got \(2, 3, 5\)"),
    ],
)
def test_wrong_initial_state_names_expected_and_received_shapes(initial_state, message):
    layer = Recurrent("lstm", 4, num_layers=2)
    with pytest.raises(ValueError, match=message):
        layer(np.zeros((3, 5, 2), "float32"), initial_state=initial_state)


@pytest.mark.parametrize(
    "shape, message",
    [
        ((3, 5), "expected ndim=3, found ndim=2"),
        ((3, 5, 9), r"value 2, but received input with shape \(3, 5, 9\)"),
    ],
)
def test_wrong_input_rank_or_width_names_the_shapes(shape, message):
    layer = Recurrent("gru", 4)
    layer(np.zeros((3, 5, 2), "float32"))
    with pytest.raises(ValueError, match=message):
        layer(np.zeros(shape, "float32"))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"cell": "elman", "units": 3}, r"`cell`. Expected one of \['coupled_lstm'"),
        ({"cell": "lstm", "units": -1}, "Expected a positive integer, got -1"),
        ({"cell": "lstm", "units": 3, "num_layers": 0}, "`num_layers`"),
        ({"cell": "lstm", "units": 3, "dropout": 1.5}, "`dropout`"),
    ],
)
def test_invalid_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Recurrent(**kwargs)


def test_stateful_and_bidirectional_together_are_refused():
    with pytest.raises(ValueError, match="A stateful `Recurrent` cannot be bidirectional"):
        Recurrent("lstm", 4, bidirectional=True, stateful=True)


def test_a_stateful_layer_names_the_batch_size_it_keeps_state_for():
    layer = Recurrent("gru", 4, stateful=True)
    layer.build((3, None, 2))
    with pytest.raises(ValueError, match="keeps the state of 3 sequences; received a batch of 5"):
        layer(np.zeros((5, 4, 2), "float32"))


def test_zero_length_sequences_are_a_clear_error():
    with pytest.raises(ValueError, match=r"received sequences of length 0 \(input shape \(2, 0, 3\)\)"):
        Recurrent("lstm", 4)(np.zeros((2, 0, 3), "float32"))
