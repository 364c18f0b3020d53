"""The language-model signatures, for every cell with one and two layers.

Each (cell, layers) pair is exported once from a hand-made run directory
(char vocabulary for one layer, word vocabulary for two) and checked against
the Keras model and the Python vocabulary: `serving_default` and `step`
logits, `step` in chunks, greedy `generate` against Python greedy decoding,
seeded sampling, `generate_text` against `generate` + `Vocabulary`,
`encode`/`decode` against `Vocabulary`, and the metadata. A model biased
towards `[UNK]` shows that `[UNK]` is never generated.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from rnnserve.models import CELLS, build_language_model
from rnnserve.training.export import export_language_model
from rnnserve.training.vocab import Vocabulary
from tests.export.artifacts import (
    CORPUS,
    GREEDY_TOKENS,
    build_once,
    language_model_artifact,
    load_savedmodel,
    only_version,
    shared_root,
)

COMBOS = [(cell, layers) for cell in CELLS for layers in (1, 2)]
TOLERANCE = 1e-5


@pytest.fixture(params=COMBOS, ids=[f"{cell}-{layers}" for cell, layers in COMBOS])
def lm(request, tmp_path_factory):
    cell, layers = request.param
    return language_model_artifact(tmp_path_factory, cell, layers)


def test_serving_default_logits_equal_keras(lm):
    logits = lm.call("serving_default", tokens=lm.oracle["tokens"])["logits"]
    np.testing.assert_allclose(logits, lm.oracle["logits"], atol=TOLERANCE, rtol=0)


def test_step_from_zeros_equals_keras_and_chunks_carry_the_state(lm):
    tokens = lm.oracle["tokens"]
    whole = lm.call("step", tokens=tokens, state=lm.zeros(2))
    np.testing.assert_allclose(whole["logits"], lm.oracle["logits"], atol=TOLERANCE, rtol=0)
    state, chunks = lm.zeros(2), []
    for start, stop in ((0, 2), (2, 3), (3, 9)):
        out = lm.call("step", tokens=tokens[:, start:stop], state=state)
        chunks.append(out["logits"])
        state = out["state"]
    np.testing.assert_allclose(np.concatenate(chunks, axis=1), lm.oracle["logits"], atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(state, whole["state"], atol=TOLERANCE, rtol=0)
    assert state.shape == (2, lm.metadata["state_size"])


def test_greedy_generate_equals_python_greedy_and_continues_from_its_state(lm):
    expected = lm.oracle["greedy"]  # (B, 10)
    first = lm.generate(lm.oracle["prompts"], n=6)
    np.testing.assert_array_equal(first["tokens"], expected[:, :6])
    more = lm.generate(first["tokens"][:, -1:], state=first["state"], n=4)
    np.testing.assert_array_equal(more["tokens"], expected[:, 6:])


def test_seeded_sampling_repeats_with_the_same_seed_only(lm):
    prompts = lm.oracle["prompts"]
    a = lm.generate(prompts, n=24, temperature=1.0, seed=11)["tokens"]
    b = lm.generate(prompts, n=24, temperature=1.0, seed=11)["tokens"]
    c = lm.generate(prompts, n=24, temperature=1.0, seed=12)["tokens"]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert (a > 0).all() and (c > 0).all()
    top1 = lm.generate(prompts, n=GREEDY_TOKENS, temperature=1.5, top_k=1, seed=3)["tokens"]
    np.testing.assert_array_equal(top1, lm.oracle["greedy"])


def test_generate_text_equals_generate_decoded_with_the_vocabulary(lm):
    vocab = lm.vocab
    # Greedy: prompts of different lengths in one batch, each row as if alone.
    prompts = ["the quick", "how", "hello wor"]
    for prompt, text in zip(prompts, lm.generate_text(prompts)):
        assert text == vocab.decode(lm.generate(vocab.encode(prompt)[None])["tokens"][0])
    # Sampled: row b draws the same numbers in both signatures (equal-length prompts).
    prompts = ["the fox", "the dog", "how are"]
    encoded = np.stack([vocab.encode(prompt) for prompt in prompts])  # (B, T)
    options = {"temperature": 0.9, "top_k": 5, "seed": 4}
    tokens = lm.generate(encoded, **options)["tokens"]
    assert lm.generate_text(prompts, **options) == [vocab.decode(row) for row in tokens]


def test_encode_and_decode_equal_the_python_vocabulary(lm):
    vocab = lm.vocab
    texts = ["hello, world", "unknown: Ω é\x0bzz!", "", "a  b\tc\n"]
    out = lm.call("encode", text=tf.constant(texts))
    for row, text in enumerate(texts):
        expected = vocab.encode(text)
        assert out["lengths"][row] == len(expected)
        np.testing.assert_array_equal(out["tokens"][row, : len(expected)], expected)
        assert (out["tokens"][row, len(expected) :] == 0).all()
    ids = lm.oracle["tokens"]
    decoded = lm.call("decode", tokens=ids)["text"]
    assert [text.decode("utf-8") for text in decoded] == [vocab.decode(row) for row in ids]


def test_metadata_describes_the_stack_and_the_signature_state_width(lm):
    cell, layers = lm.metadata["cell"], lm.metadata["layers"]
    assert (cell, layers) in COMBOS
    meta = lm.metadata
    assert meta["units"] == 8 and meta["embedding_dim"] == 6 and meta["bidirectional"] is False
    assert meta["vocab_size"] == len(lm.vocab) and meta["vocab_level"] == lm.vocab.level
    states_per_layer = 2 if cell.endswith("lstm") else 1
    assert meta["state_size"] == lm.state_size == states_per_layer * layers * 8
    assert sum(entry["size"] for entry in meta["state_layout"]) == lm.state_size
    assert meta["max_new_tokens_limit"] == 1024
    assert set(meta["signatures"]) == {
        "serving_default",
        "step",
        "generate",
        "generate_text",
        "encode",
        "decode",
    }
    assert meta["signatures"]["step"]["outputs"]["state"] == {
        "dtype": "float32",
        "shape": [-1, lm.state_size],
    }


def _build_unk_loving_export(path):
    keras.utils.set_random_seed(0)
    vocabulary = Vocabulary.build(CORPUS)
    model = build_language_model(len(vocabulary), cell="lstm", units=8, embedding_dim=6)
    bias = model.get_layer("logits").bias
    bias.assign(bias.numpy() + 30.0 * np.eye(len(vocabulary), dtype="float32")[0])  # [UNK] wins every argmax
    export_language_model(model, vocabulary, str(path / "export"), verify=False)


def test_unk_is_never_generated_even_by_a_model_that_prefers_it(tmp_path_factory):
    path = build_once(shared_root(tmp_path_factory), "unk-loving", _build_unk_loving_export)
    signatures = load_savedmodel(only_version(path / "export")).signatures
    tokens = np.array([[1, 2, 3], [4, 5, 6]], np.int32)
    logits = signatures["serving_default"](tokens=tokens)["logits"].numpy()
    assert (logits.argmax(-1) == 0).all()
    state = np.zeros((2, signatures["step"].structured_input_signature[1]["state"].shape[1]), np.float32)
    for temperature, top_k in ((0.0, 0), (1.0, 0), (5.0, 0), (1.0, 2)):
        out = signatures["generate"](
            tokens=tokens,
            state=state,
            max_new_tokens=np.int32(30),
            temperature=np.float32(temperature),
            top_k=np.int32(top_k),
            seed=np.int64(1),
        )
        assert (out["tokens"].numpy() > 0).all(), (temperature, top_k)


def test_token_loops_read_no_variable_per_token(lm):
    """`generate` and `generate_text` read the model's weights once per
    request, before their loops: no loop body of either signature has a
    `ReadVariableOp` (at B = 1 each op of a loop body costs about a µs per
    token)."""
    for name in ("generate", "generate_text"):
        library = lm.model.signatures[name].graph.as_graph_def().library.function
        bodies = [f for f in library if "while_body" in f.signature.name]
        assert bodies, name
        for body in bodies:
            reads = [node.name for node in body.node_def if node.op == "ReadVariableOp"]
            assert not reads, (name, body.signature.name, reads)
