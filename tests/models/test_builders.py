"""The model builders: the four structures, named inputs and outputs, and
greedy decoding (the packed language-model state: test_state.py)."""

import keras
import numpy as np
import pytest

from rnnserve.models import (
    build_classifier,
    build_conditioned_generator,
    build_language_model,
    build_regressor,
    build_seq2seq,
    greedy_decode,
)

TOL = 1e-5


def test_mixed_precision_language_model_keeps_float32_logits():
    keras.mixed_precision.set_global_policy("mixed_float16")
    model = build_language_model(11, cell="lstm", units=8)
    assert model.get_layer("recurrent").compute_dtype == "float16"
    assert model(np.ones((2, 4), "int32")).dtype == "float32"


def test_builders_name_their_inputs_and_outputs():
    assert [t.name for t in build_language_model(5, units=4).inputs] == ["tokens"]
    assert [t.name for t in build_regressor(2, units=4).inputs] == ["sequence"]
    assert [t.name for t in build_classifier(2, input_dim=3, units=4).inputs] == ["sequence"]
    assert [t.name for t in build_seq2seq(5, 6, units=4).inputs] == ["source", "target_in"]
    assert [t.name for t in build_conditioned_generator(3, 6, units=4).inputs] == ["condition", "tokens"]


def test_classifier_reads_the_last_real_step_of_padded_sequences(rng):
    model = build_classifier(3, vocab_size=9, units=5, bidirectional=True)
    padded = np.array([[4, 5, 6, 0, 0]], "int32")
    np.testing.assert_allclose(model(padded), model(padded[:, :3]), atol=TOL)


@pytest.mark.parametrize("builder", ["seq2seq", "condgen"])
def test_greedy_decode_picks_the_argmax_of_the_teacher_forced_model(builder, rng):
    """Feeding the greedy tokens back with teacher forcing, each token is the
    argmax of the logits at its own position."""
    if builder == "seq2seq":
        model = build_seq2seq(7, 9, cell="gru", units=8, num_layers=2)
        inputs = rng.integers(1, 7, size=(4, 5)).astype("int32")
    else:
        model = build_conditioned_generator(3, 9, cell="lstm", units=8, num_layers=2)
        inputs = rng.standard_normal((4, 3)).astype("float32")
    for weight in model.weights:
        weight.assign(rng.standard_normal(weight.shape).astype("float32"))
    tokens = greedy_decode(model, inputs, start_id=1, length=6).numpy()
    teacher = np.concatenate([np.ones((4, 1), "int32"), tokens[:, :-1]], axis=1)
    logits = model([inputs, teacher]).numpy()
    np.testing.assert_array_equal(tokens, logits.argmax(-1))


def test_classifier_needs_exactly_one_input_kind():
    with pytest.raises(ValueError, match="exactly one of `vocab_size`"):
        build_classifier(2, vocab_size=5, input_dim=3)
