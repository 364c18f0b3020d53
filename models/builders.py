"""Functional Keras models for the four structures of recurrent networks.

| structure | builder | inputs → outputs |
|---|---|---|
| N→N (tokens) | `build_language_model` | `tokens` (B,T) int32 → `logits` (B,T,V) |
| N→N (reals)  | `build_regressor`      | `sequence` (B,T,F) → `prediction` (B,T,O) |
| N→1          | `build_classifier`     | `tokens` (B,T) int32 or `sequence` (B,T,F) → `logits` (B,C) |
| N→M          | `build_seq2seq`        | `source` (B,S) int32, `target_in` (B,T) int32 → `logits` (B,T,V) |
| 1→N          | `build_conditioned_generator` | `condition` (B,F), `tokens` (B,T) int32 → `logits` (B,T,V) |

Every model is built from `Recurrent` and Keras layers with fixed names, so
tasks and exporters can find the parts (`embedding`, `recurrent`, `logits`,
`encoder`, `decoder`, …). Logits are float32 even under a `mixed_float16`
policy. Token id 0 is padding/`[UNK]`; N→1 and N→M models mask it.
`greedy_decode` runs the decoder of the last two structures one token at a
time.
"""

from __future__ import annotations

import keras
from keras import ops

from rnnserve.models.recurrent import Recurrent


def _last_hidden(recurrent, final_state):
    """`(B, D·H)`: the last layer's final h, directions concatenated."""
    h_n = final_state[0] if isinstance(final_state, tuple) else final_state  # (L·D, B, H)
    last = [h_n[-recurrent.num_directions + d] for d in range(recurrent.num_directions)]
    return last[0] if len(last) == 1 else ops.concatenate(last, axis=-1)


def build_language_model(
    vocab_size,
    cell="lstm",
    units=256,
    num_layers=1,
    embedding_dim=64,
    dropout=0.0,
    stateful=False,
    batch_size=None,
    sequence_length=None,
    name="language_model",
    **cell_kwargs,
):
    """A token-level language model: Embedding → Recurrent → Dense.

    Args:
        vocab_size: V, the number of token ids (id 0 is `[UNK]`).
        cell: A cell name of `models.CELLS`. Default: `"lstm"`.
        units: H of every recurrent layer. Default: 256.
        num_layers: L. Default: 1.
        embedding_dim: E. Default: 64.
        dropout: Between recurrent layers (torch semantics). Default: 0.
        stateful: Carry the state from batch to batch (sequential
            partitioning); needs `batch_size`. Default: `False`.
        batch_size: Static B (required when stateful). Default: `None`.
        sequence_length: Static T, or `None` for any. Default: `None`.
        name: Model name. Default: `"language_model"`.
        **cell_kwargs: Passed to every cell (e.g. `reset_after`).

    Returns:
        A `keras.Model` with input `tokens` (B,T) int32 and output `logits`
        (B,T,V) float32.

    Example:

    >>> model = build_language_model(65, cell="gru", units=32, num_layers=2)
    >>> tuple(model(np.zeros((4, 10), "int32")).shape)
    (4, 10, 65)
    """
    tokens = keras.Input(shape=(sequence_length,), batch_size=batch_size, dtype="int32", name="tokens")
    x = keras.layers.Embedding(vocab_size, embedding_dim, name="embedding")(tokens)  # (B, T, E)
    outputs, _ = Recurrent(
        cell,
        units,
        num_layers=num_layers,
        name="recurrent",
        dropout=dropout,
        stateful=stateful,
        **cell_kwargs,
    )(x)  # (B, T, H)
    logits = keras.layers.Dense(vocab_size, dtype="float32", name="logits")(outputs)  # (B, T, V)
    return keras.Model(tokens, logits, name=name)


def build_regressor(
    input_dim,
    output_dim=1,
    cell="lstm",
    units=64,
    num_layers=1,
    bidirectional=False,
    dropout=0.0,
    name="regressor",
    **cell_kwargs,
):
    """N→N real values: Recurrent → Dense at every step (a sequence regressor).

    Args:
        input_dim: F, features per step.
        output_dim: O, values predicted per step. Default: 1.
        cell, units, num_layers, bidirectional, dropout: As `Recurrent`.
            Defaults: `"lstm"`, 64, 1, `False`, 0.
        name: Model name. Default: `"regressor"`.
        **cell_kwargs: Passed to every cell.

    Returns:
        A `keras.Model` `sequence` (B,T,F) → `prediction` (B,T,O) float32.

    Example:

    >>> tuple(build_regressor(1, units=16)(np.zeros((8, 50, 1), "float32")).shape)
    (8, 50, 1)
    """
    sequence = keras.Input(shape=(None, input_dim), name="sequence")
    outputs, _ = Recurrent(
        cell,
        units,
        num_layers=num_layers,
        name="recurrent",
        bidirectional=bidirectional,
        dropout=dropout,
        **cell_kwargs,
    )(sequence)  # (B, T, D·H)
    prediction = keras.layers.Dense(output_dim, dtype="float32", name="prediction")(outputs)  # (B, T, O)
    return keras.Model(sequence, prediction, name=name)


def build_classifier(
    num_classes,
    vocab_size=None,
    input_dim=None,
    cell="lstm",
    units=64,
    num_layers=1,
    bidirectional=False,
    dropout=0.0,
    embedding_dim=32,
    name="classifier",
    **cell_kwargs,
):
    """N→1: a sequence in, class logits out, read from the last final state.

    Give `vocab_size` for token sequences (id 0 is padding and masked) or
    `input_dim` for real-valued sequences.

    Args:
        num_classes: C.
        vocab_size: V for an input `tokens` (B,T) int32. Default: `None`.
        input_dim: F for an input `sequence` (B,T,F). Default: `None`.
        cell, units, num_layers, bidirectional, dropout: As `Recurrent`.
            Defaults: `"lstm"`, 64, 1, `False`, 0.
        embedding_dim: E when `vocab_size` is given. Default: 32.
        name: Model name. Default: `"classifier"`.
        **cell_kwargs: Passed to every cell.

    Returns:
        A `keras.Model` → `logits` (B, C) float32.

    Example:

    >>> model = build_classifier(3, vocab_size=12, units=16, bidirectional=True)
    >>> tuple(model(np.ones((5, 9), "int32")).shape)
    (5, 3)
    """
    if (vocab_size is None) == (input_dim is None):
        raise ValueError(
            "Pass exactly one of `vocab_size` (token inputs) or `input_dim` (real-valued inputs)."
        )
    if vocab_size is not None:
        inputs = keras.Input(shape=(None,), dtype="int32", name="tokens")
        x = keras.layers.Embedding(vocab_size, embedding_dim, mask_zero=True, name="embedding")(inputs)
    else:
        inputs = keras.Input(shape=(None, input_dim), name="sequence")
        x = inputs
    recurrent = Recurrent(
        cell,
        units,
        num_layers=num_layers,
        name="recurrent",
        bidirectional=bidirectional,
        dropout=dropout,
        **cell_kwargs,
    )
    _, final_state = recurrent(x)
    summary = _last_hidden(recurrent, final_state)  # (B, D·H)
    logits = keras.layers.Dense(num_classes, dtype="float32", name="logits")(summary)  # (B, C)
    return keras.Model(inputs, logits, name=name)


def build_seq2seq(
    source_vocab_size,
    target_vocab_size,
    cell="lstm",
    units=128,
    num_layers=1,
    embedding_dim=32,
    dropout=0.0,
    name="seq2seq",
    **cell_kwargs,
):
    """N→M: an encoder's final state starts a decoder (Sutskever et al., 2014).

    Trained with teacher forcing: `target_in` is the target shifted right
    behind a start token; padding id 0 is masked in `source`.

    Args:
        source_vocab_size, target_vocab_size: Vocabulary sizes.
        cell, units, num_layers, dropout: As `Recurrent`, shared by encoder
            and decoder. Defaults: `"lstm"`, 128, 1, 0.
        embedding_dim: E of both embeddings. Default: 32.
        name: Model name. Default: `"seq2seq"`.
        **cell_kwargs: Passed to every cell.

    Returns:
        A `keras.Model` (`source` (B,S), `target_in` (B,T)) → `logits`
        (B,T,V_target) float32. Layers: `encoder_embedding`, `encoder`,
        `decoder_embedding`, `decoder`, `logits`.

    Example:

    >>> model = build_seq2seq(12, 12, units=16)
    >>> tuple(model([np.ones((2, 7), "int32"), np.ones((2, 8), "int32")]).shape)
    (2, 8, 12)
    """
    source = keras.Input(shape=(None,), dtype="int32", name="source")
    target_in = keras.Input(shape=(None,), dtype="int32", name="target_in")
    x = keras.layers.Embedding(source_vocab_size, embedding_dim, mask_zero=True, name="encoder_embedding")(
        source
    )
    _, encoder_state = Recurrent(
        cell, units, num_layers=num_layers, name="encoder", dropout=dropout, **cell_kwargs
    )(x)
    y = keras.layers.Embedding(target_vocab_size, embedding_dim, name="decoder_embedding")(target_in)
    outputs, _ = Recurrent(
        cell, units, num_layers=num_layers, name="decoder", dropout=dropout, **cell_kwargs
    )(y, initial_state=encoder_state)  # (B, T, H)
    logits = keras.layers.Dense(target_vocab_size, dtype="float32", name="logits")(outputs)
    return keras.Model([source, target_in], logits, name=name)


def build_conditioned_generator(
    condition_dim,
    vocab_size,
    cell="lstm",
    units=64,
    num_layers=1,
    embedding_dim=32,
    dropout=0.0,
    name="conditioned_generator",
    **cell_kwargs,
):
    """1→N: a vector sets the initial state of a token decoder.

    Each state tensor of each layer is `tanh(condition·A + a)` (one Dense per
    state tensor, named `init_h`, `init_c`); the decoder then reads
    `tokens` (a start token followed by the target, teacher forcing).

    Args:
        condition_dim: F, the width of the conditioning vector.
        vocab_size: V of the generated tokens.
        cell, units, num_layers, dropout: As `Recurrent`. Defaults:
            `"lstm"`, 64, 1, 0.
        embedding_dim: E. Default: 32.
        name: Model name. Default: `"conditioned_generator"`.
        **cell_kwargs: Passed to every cell.

    Returns:
        A `keras.Model` (`condition` (B,F), `tokens` (B,T)) → `logits`
        (B,T,V) float32. Layers: `init_*`, `decoder_embedding`, `decoder`,
        `logits`.

    Example:

    >>> model = build_conditioned_generator(4, 10, units=16)
    >>> tuple(model([np.zeros((3, 4), "float32"), np.ones((3, 6), "int32")]).shape)
    (3, 6, 10)
    """
    condition = keras.Input(shape=(condition_dim,), name="condition")
    tokens = keras.Input(shape=(None,), dtype="int32", name="tokens")
    decoder = Recurrent(cell, units, num_layers=num_layers, name="decoder", dropout=dropout, **cell_kwargs)
    init_layers = [
        keras.layers.Dense(num_layers * units, activation="tanh", name=f"init_{state}")
        for state in decoder.cell_class.STATES
    ]
    y = keras.layers.Embedding(vocab_size, embedding_dim, name="decoder_embedding")(tokens)
    outputs, _ = decoder(y, initial_state=_state_from_condition(init_layers, decoder, condition))
    logits = keras.layers.Dense(vocab_size, dtype="float32", name="logits")(outputs)  # (B, T, V)
    return keras.Model([condition, tokens], logits, name=name)


def decoder_initial_state(model, inputs):
    """The decoder's initial state of a seq2seq or conditioned-generator model.

    Args:
        model: From `build_seq2seq` (inputs: `source` (B,S)) or
            `build_conditioned_generator` (inputs: `condition` (B,F)).
        inputs: That input tensor.

    Returns:
        The `initial_state` structure the model's `decoder` takes.
    """
    if "encoder" in [layer.name for layer in model.layers]:
        x = model.get_layer("encoder_embedding")(inputs)
        _, state = model.get_layer("encoder")(x)
        return state
    decoder = model.get_layer("decoder")
    init_layers = [model.get_layer(f"init_{state}") for state in decoder.cell_class.STATES]
    return _state_from_condition(init_layers, decoder, inputs)


def _state_from_condition(init_layers, decoder, condition):
    """One Dense per state tensor: `(B, F)` → `initial_state` of `decoder`."""
    initial = [
        ops.transpose(
            ops.reshape(layer(condition), (-1, decoder.num_layers, decoder.units)), (1, 0, 2)
        )  # (L, B, H)
        for layer in init_layers
    ]
    return initial[0] if len(initial) == 1 else tuple(initial)


def greedy_decode(model, inputs, start_id, length):
    """Generates `length` tokens greedily from a seq2seq or 1→N model.

    Args:
        model: From `build_seq2seq` or `build_conditioned_generator`.
        inputs: `source` (B,S) int32 or `condition` (B,F) float32.
        start_id: The start token fed first.
        length: Number of tokens to generate (a Python int; the loop is
            unrolled, which keeps it a plain graph for export).

    Returns:
        `(B, length)` int32 token ids.

    Example:

    >>> model = build_seq2seq(12, 12, units=16)
    >>> tuple(greedy_decode(model, np.ones((2, 5), "int32"), start_id=1, length=6).shape)
    (2, 6)
    """
    state = decoder_initial_state(model, inputs)
    embedding, decoder, dense = (model.get_layer(n) for n in ("decoder_embedding", "decoder", "logits"))
    token = ops.full((ops.shape(inputs)[0], 1), start_id, dtype="int32")  # (B, 1)
    generated = []
    for _ in range(length):
        outputs, state = decoder(embedding(token), initial_state=state)
        token = ops.cast(ops.argmax(dense(outputs), axis=-1), "int32")  # (B, 1)
        generated.append(token)
    return ops.concatenate(generated, axis=1)


# The builders by the name a run's config.json records (docs/run-directory.md).
BUILDERS = {
    "language_model": build_language_model,
    "regressor": build_regressor,
    "classifier": build_classifier,
    "seq2seq": build_seq2seq,
    "conditioned_generator": build_conditioned_generator,
}
