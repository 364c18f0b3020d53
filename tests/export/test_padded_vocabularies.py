"""Language models on Keras' default vocabulary layout: padding `""` at id 0, `[UNK]` at id 1.

`TextVectorization` and `StringLookup(mask_token="")` number their
vocabularies that way. A language model trained on such ids is exported
through the CLI with the layer's own `get_vocabulary()` as `--vocab`. The
oracles are Keras': the model's own logits on the same ids, the layer's own
ids for a text (unknown characters → 1), and greedy decoding by re-running
the model with both reserved ids excluded. The model's output bias favours
ids 0 and 1, so a sampler that let either through would draw them often;
many high-temperature draws never do. The client's note on unknown prompt
characters counts the model's `[UNK]` id, asked of a real server.
"""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from rnnserve.serving.config import ServerOptions
from rnnserve.serving.server import ModelServer
from rnnserve.training.export import export_keras_model
from tests.export.artifacts import build_once, load_savedmodel, python_greedy, run_rnnserve, shared_root

TEXT = "hello world, a quiet lowland"
PROMPTS = ["hello", "world"]


def _vectorizer():
    layer = keras.layers.TextVectorization(standardize=None, split="character", output_mode="int")
    layer.adapt([TEXT])
    return layer


def _language_model(vocab_size):
    keras.utils.set_random_seed(5)
    model = keras.Sequential(
        [
            keras.Input((None,), dtype="int32"),
            keras.layers.Embedding(vocab_size, 6),
            keras.layers.GRU(8, return_sequences=True),
            keras.layers.Dense(vocab_size),
        ]
    )
    bias = np.zeros(vocab_size, np.float32)
    bias[:2] = 6.0  # padding and [UNK] would be the likeliest next tokens
    model.layers[-1].bias.assign(bias)
    return model


def _build(path):
    tokens = _vectorizer().get_vocabulary()
    assert tokens[:2] == ["", "[UNK]"]  # Keras' own layout, the one under test
    (path / "vocab.json").write_text(json.dumps(tokens))
    _language_model(len(tokens)).save(path / "lm.keras")
    result = run_rnnserve(
        "export", "--keras-model", path / "lm.keras", "--vocab", path / "vocab.json",
        "--export-base", path / "base",
    )  # fmt: skip
    (path / "result.json").write_text(json.dumps([result.returncode, result.stdout, result.stderr]))


@pytest.fixture
def exported(tmp_path_factory):
    """(directory, CLI result (code, stdout, stderr), Keras model, vocabulary tokens)."""
    path = build_once(shared_root(tmp_path_factory), "padded-vocabulary-lm", _build)
    model = keras.saving.load_model(path / "lm.keras")
    return (
        path,
        json.loads((path / "result.json").read_text()),
        model,
        json.loads((path / "vocab.json").read_text()),
    )


def _ids(texts):
    return _vectorizer()(tf.constant(texts)).numpy().astype(np.int32)  # (B, T), the layer's own ids


def test_a_text_vectorization_vocabulary_language_model_exports_through_the_cli(exported):
    path, (code, stdout, stderr), _, tokens = exported
    assert code == 0, stderr
    assert "Traceback" not in stderr and stdout.splitlines() == [str(path / "base" / "1")]
    with open(path / "base" / "1" / "assets.extra" / "rnnserve.json", encoding="utf-8") as f:
        metadata = json.load(f)
    assert (metadata["unk_id"], metadata["padding_id"], metadata["vocab_size"]) == (1, 0, len(tokens))


def test_step_and_serving_default_give_the_keras_model_s_logits(exported):
    path, _, model, _ = exported
    signatures = load_savedmodel(str(path / "base" / "1")).signatures
    ids = _ids(PROMPTS)
    expected = np.asarray(model(ids, training=False))
    logits = signatures["serving_default"](tokens=tf.constant(ids))["logits"].numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-5, rtol=0)
    step = signatures["step"](tokens=tf.constant(ids), state=tf.zeros((2, 8)))["logits"].numpy()
    np.testing.assert_allclose(step, expected, atol=1e-5, rtol=0)


def test_encode_maps_unknown_characters_to_the_layers_unk_id(exported):
    path, _, _, tokens = exported
    signatures = load_savedmodel(str(path / "base" / "1")).signatures
    text = ["hello zebra?", "wx"]  # "z", "b", "?" and "x" are not in the vocabulary
    encoded = signatures["encode"](text=tf.constant(text))
    lengths = encoded["lengths"].numpy()
    np.testing.assert_array_equal(lengths, [len(t) for t in text])
    for row, (ids, length) in enumerate(zip(encoded["tokens"].numpy(), lengths)):
        np.testing.assert_array_equal(ids[:length], _ids([text[row]])[0])
    assert 1 in encoded["tokens"].numpy()[0]
    decoded = signatures["decode"](tokens=tf.constant(_ids(["hello"])))["text"].numpy()
    assert decoded.tolist() == [b"hello"]


def test_generate_never_emits_the_padding_id_or_unk(exported):
    path, _, model, _ = exported
    signatures = load_savedmodel(str(path / "base" / "1")).signatures
    prompts = _ids(PROMPTS)
    rows = 512
    drawn = signatures["generate"](
        tokens=tf.constant(np.repeat(prompts, rows // 2, axis=0)),
        state=tf.zeros((rows, 8)),
        max_new_tokens=np.int32(8),
        temperature=np.float32(4.0),
        top_k=np.int32(0),
        seed=np.int64(3),
    )["tokens"].numpy()
    assert drawn.min() >= 2, np.bincount(drawn.ravel())
    assert len(np.unique(drawn)) > 5  # it does sample
    greedy = signatures["generate"](
        tokens=tf.constant(prompts),
        state=tf.zeros((2, 8)),
        max_new_tokens=np.int32(6),
        temperature=np.float32(0),
        top_k=np.int32(0),
        seed=np.int64(0),
    )["tokens"].numpy()
    np.testing.assert_array_equal(greedy, python_greedy(model, prompts, 6, masked_ids=(0, 1)))


def test_the_client_names_the_prompt_characters_that_became_the_model_s_unk(exported, capsys):
    from rnnserve.cli import main

    path, _, _, _ = exported
    server = ModelServer(ServerOptions.for_model("lm", str(path / "base"), port=0, rest_api_port=0)).start()
    try:
        argv = ["generate", "--server", f"127.0.0.1:{server.grpc_port}", "--model", "lm",
                "--prompt", "hello zx", "--max-new-tokens", "12", "--temperature", "3"]  # fmt: skip
        assert main(argv) == 0
    finally:
        server.stop(grace=1)
    captured = capsys.readouterr()
    assert captured.err == (
        "rnnserve generate: note: the model's vocabulary has no 'z', 'x'; the prompt feeds them as [UNK].\n"
    )
    assert captured.out.startswith("hello zx") and "[UNK]" not in captured.out


def test_a_language_model_with_a_padded_string_lookup_needs_no_vocab(tmp_path):
    chars = keras.Input((None,), dtype="string", name="chars")
    lookup = keras.layers.StringLookup(vocabulary=list("abcde"), mask_token="")
    assert lookup.get_vocabulary()[:2] == ["", "[UNK]"]
    x = keras.layers.LSTM(4, return_sequences=True)(keras.layers.Embedding(7, 3)(lookup(chars)))
    model = keras.Model(chars, keras.layers.Dense(7)(x), name="padded_lookup_lm")
    model.save(tmp_path / "lm.keras")
    signatures = load_savedmodel(
        export_keras_model(tmp_path / "lm.keras", None, tmp_path / "base")
    ).signatures

    text = np.array([list("abca"), list("edzb")])  # "z" is outside the vocabulary
    ids = lookup(text).numpy().astype(np.int32)  # the layer's own ids: "z" → 1
    assert ids[1, 2] == 1
    logits = signatures["serving_default"](tokens=tf.constant(ids))["logits"].numpy()
    np.testing.assert_allclose(logits, np.asarray(model(text, training=False)), atol=1e-5, rtol=0)
    encoded = signatures["encode"](text=tf.constant(["abca", "edzb"]))["tokens"].numpy()
    np.testing.assert_array_equal(encoded, ids)


def test_a_stream_masks_the_padding_id_and_unk_as_generate_does(exported):
    from rnnserve.serving.client import PredictionClient

    path, _, _, _ = exported
    prompt = _ids(PROMPTS)[:1]
    generate = load_savedmodel(str(path / "base" / "1")).signatures["generate"]
    server = ModelServer(ServerOptions.for_model("lm", str(path / "base"), port=0, rest_api_port=0)).start()
    try:
        with PredictionClient(f"127.0.0.1:{server.grpc_port}") as client:
            for seed in range(4):
                with client.generate_stream(
                    "lm", tokens=prompt[0].tolist(), max_new_tokens=16, temperature=4.0, seed=seed
                ) as stream:
                    streamed = [token for piece in stream for token in piece.token_ids]
                expected = generate(
                    tokens=tf.constant(prompt),
                    state=tf.zeros((1, 8)),
                    max_new_tokens=np.int32(16),
                    temperature=np.float32(4.0),
                    top_k=np.int32(0),
                    seed=np.int64(seed),
                )["tokens"].numpy()[0]
                assert streamed == expected.tolist()
                assert min(streamed) >= 2
    finally:
        server.stop(grace=1)
