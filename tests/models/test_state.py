"""The packed language-model state (`models/state.py`): its layout, and
running a chain model from it (`models/runner.py`) over a sequence and one
token at a time."""

import keras
import numpy as np
import pytest

from rnnserve.models import (
    CELLS,
    Recurrent,
    build_language_model,
    run_language_model,
    state_layout,
    state_size,
)
from rnnserve.models.runner import run_language_model_token
from rnnserve.models.state import pack_cell_states, unpack_cell_states

TOL = 1e-5


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_language_model_state_width_comes_from_the_cells(cell):
    model = build_language_model(11, cell=cell, units=6, num_layers=2)
    states_per_layer = len(CELLS[cell].STATES)
    assert state_size(model) == states_per_layer * 2 * 6
    layout = state_layout(model)
    assert [e["offset"] for e in layout] == list(range(0, state_size(model), 6))


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_language_model_fed_in_chunks_equals_one_call(cell, rng):
    model = build_language_model(11, cell=cell, units=6, num_layers=2, embedding_dim=5)
    tokens = rng.integers(0, 11, size=(3, 9)).astype("int32")
    whole = model(tokens)
    logits_a, state = run_language_model(model, tokens[:, :4])
    logits_b, _ = run_language_model(model, tokens[:, 4:], state)
    np.testing.assert_allclose(np.concatenate([logits_a, logits_b], axis=1), whole, atol=TOL)


def test_zero_state_is_a_fresh_sequence(rng):
    model = build_language_model(11, cell="gru", units=6)
    tokens = rng.integers(0, 11, size=(2, 5)).astype("int32")
    logits, _ = run_language_model(model, tokens, np.zeros((2, state_size(model)), "float32"))
    np.testing.assert_allclose(logits, model(tokens), atol=TOL)


def _two_recurrent_chain():
    """Embedding → LSTM ×2 → Dropout → GRU → Dense: two `Recurrent` layers
    with different states, so the packed layout has three blocks."""
    tokens = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(13, 5)(tokens)
    x, _ = Recurrent("lstm", 6, num_layers=2)(x)
    x = keras.layers.Dropout(0.5)(x)
    x, _ = Recurrent("gru", 4)(x)
    return keras.Model(tokens, keras.layers.Dense(13)(x))


def _token_by_token(model, tokens, state):
    """The sequence one token at a time through `run_language_model_token`."""
    cell_states, logits = unpack_cell_states(model, state), []
    for t in range(tokens.shape[1]):
        step_logits, cell_states = run_language_model_token(model, tokens[:, t], cell_states)
        logits.append(step_logits)
    return np.stack(logits, axis=1), pack_cell_states(model, cell_states)


@pytest.mark.parametrize("build", ["two recurrent layers", *sorted(CELLS)])
def test_token_by_token_equals_the_sequence(build, rng):
    """From the same packed state, T single tokens give the logits and the
    packed state of one call over the sequence (whose parity with torch and
    the reference equations is tested elsewhere)."""
    if build == "two recurrent layers":
        model = _two_recurrent_chain()
    else:
        model = build_language_model(13, cell=build, units=6, num_layers=2, embedding_dim=5)
    tokens = rng.integers(0, 13, size=(3, 7)).astype("int32")
    state = rng.standard_normal((3, state_size(model))).astype("float32")
    want_logits, want_state = run_language_model(model, tokens, state)
    got_logits, got_state = _token_by_token(model, tokens, state)
    np.testing.assert_allclose(got_logits, want_logits, atol=TOL)
    np.testing.assert_allclose(got_state, want_state, atol=TOL)


@pytest.mark.parametrize("build", ["two recurrent layers", "lstm", "gru"])
def test_one_position_per_call_equals_the_sequence(build, rng):
    """`run_language_model` on T = 1 (the one-cell-call path of `Recurrent`),
    carrying the packed state from call to call, gives the logits and state
    of one call over the whole sequence (the time-loop path)."""
    if build == "two recurrent layers":
        model = _two_recurrent_chain()
    else:
        model = build_language_model(13, cell=build, units=6, num_layers=2, embedding_dim=5)
    tokens = rng.integers(0, 13, size=(3, 6)).astype("int32")
    state = rng.standard_normal((3, state_size(model))).astype("float32")
    want_logits, want_state = run_language_model(model, tokens, state)
    logits = []
    for t in range(tokens.shape[1]):
        step_logits, state = run_language_model(model, tokens[:, t : t + 1], state)  # (3, 1, V)
        logits.append(step_logits[:, 0])
    np.testing.assert_allclose(np.stack(logits, axis=1), want_logits, atol=TOL)
    np.testing.assert_allclose(state, want_state, atol=TOL)


def test_a_stateful_layer_fed_one_position_per_call_carries_its_state(rng):
    """One position per call of a stateful `Recurrent` reads and writes its
    stored state as a whole-sequence call does: equal to the stateless layer
    over the sequence, and its stored state is that layer's final state."""
    stateless = Recurrent("lstm", 5, num_layers=2)
    stateful = Recurrent("lstm", 5, num_layers=2, stateful=True)
    x = rng.standard_normal((2, 4, 3)).astype("float32")
    want, (h_n, c_n) = stateless(x)
    stateful(keras.ops.zeros((2, 1, 3)))
    for mine, theirs in zip(stateful.trainable_weights, stateless.trainable_weights, strict=True):
        mine.assign(theirs)
    stateful.reset_state()
    got = np.concatenate([stateful(x[:, t : t + 1])[0] for t in range(4)], axis=1)
    np.testing.assert_allclose(got, want, atol=TOL)
    np.testing.assert_allclose(stateful.state_variables[0].numpy(), h_n, atol=TOL)
    np.testing.assert_allclose(stateful.state_variables[1].numpy(), c_n, atol=TOL)


def test_unpack_then_pack_cell_states_is_the_identity(rng):
    model = _two_recurrent_chain()
    state = rng.standard_normal((2, state_size(model))).astype("float32")
    cell_states = unpack_cell_states(model, state)
    assert [len(per_layer) for per_layer in cell_states] == [2, 1]
    assert [len(states) for states in cell_states[0]] == [2, 2]  # h, c of each LSTM layer
    np.testing.assert_array_equal(pack_cell_states(model, cell_states), state)


def test_token_step_uses_the_weights_it_is_given(rng):
    """`weights` replaces every variable's value for the call: model A run
    with model B's values gives model B's logits."""
    model_a = build_language_model(13, cell="lstm", units=6, embedding_dim=5)
    model_b = build_language_model(13, cell="lstm", units=6, embedding_dim=5)
    for variable in model_b.variables:
        variable.assign(rng.standard_normal(variable.shape).astype("float32"))
    tokens = rng.integers(0, 13, size=(2,)).astype("int32")
    zeros = unpack_cell_states(model_a, np.zeros((2, state_size(model_a)), "float32"))
    weights = [(a, b.value) for a, b in zip(model_a.variables, model_b.variables)]
    got, _ = run_language_model_token(model_a, tokens, zeros, weights)
    want, _ = run_language_model_token(model_b, tokens, zeros)
    unchanged, _ = run_language_model_token(model_a, tokens, zeros)
    np.testing.assert_allclose(got, want, atol=TOL)
    assert np.abs(np.asarray(got) - np.asarray(unchanged)).max() > 1e-3


@pytest.mark.filterwarnings("ignore:Layer .* does not have a `quantize` method")
def test_quantized_embedding_keeps_its_own_lookup(rng):
    """An int8-quantized model stepped token by token equals its own call
    (a plain gather of the int8 table would not)."""
    model = build_language_model(13, cell="lstm", units=6, embedding_dim=5)
    model.quantize("int8")
    tokens = rng.integers(0, 13, size=(2, 4)).astype("int32")
    state = np.zeros((2, state_size(model)), "float32")
    got, _ = _token_by_token(model, tokens, state)
    np.testing.assert_allclose(got, model(tokens), atol=TOL)
