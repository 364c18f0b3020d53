"""The export loads and runs in a process that imports no project code.

One export holds all five cells (a chain Embedding → rnn → lstm ×2 → gru
(reset-before) → peephole_lstm → coupled_lstm → Dense, whose packed state
mixes h-only and (h, c) layers). A fresh Python process, with the project's
packages blocked from import, loads it with `tf.saved_model.load` and with
the TF1 loader in a `tf.compat.v1.Session`, feeding tensors by the names the
SignatureDefs list (what TF Serving's C++ loader does), and runs every
signature. Its outputs are compared here with the Keras model and the Python
vocabulary.
"""

import keras
import numpy as np
import pytest

from rnnserve.models import Recurrent
from rnnserve.training.export import export_language_model
from rnnserve.training.vocab import Vocabulary
from tests.export.artifacts import (
    CORPUS,
    PROJECT_PACKAGES,
    build_once,
    keras_logits,
    only_version,
    python_greedy,
    run_without_project,
    shared_root,
)

TOLERANCE = 1e-5
GREEDY_TOKENS = 8
PROMPTS = ["the lazy", "hello wo"]
# rnn h (5) + lstm 2 layers × (h, c) (2·2·4) + gru h (6) + peephole (h, c) (2·5) + coupled (h, c) (2·4)
STATE_WIDTH = 5 + 16 + 6 + 10 + 8

CLIENT = r"""
import sys
import numpy as np
import tensorflow as tf

export_dir, inputs_path, outputs_path = sys.argv[1:4]
PROJECT_PACKAGES = sys.argv[4].split(",")
data = np.load(inputs_path)
tokens, prompts = data["tokens"], data["prompts"]
state_width = int(data["state_width"])
sampling = {"temperature": np.float32(0), "top_k": np.int32(0), "seed": np.int64(0)}
new = np.int32(data["greedy_tokens"])
texts = [t.encode() for t in data["texts"]]
out = {}

loaded = tf.saved_model.load(export_dir)
sig = loaded.signatures
out["tf2_logits"] = sig["serving_default"](tokens=tf.constant(tokens))["logits"].numpy()
first = sig["step"](tokens=tf.constant(tokens[:, :3]), state=tf.zeros((2, state_width)))
rest = sig["step"](tokens=tf.constant(tokens[:, 3:]), state=first["state"])
out["tf2_step_logits"] = np.concatenate([first["logits"].numpy(), rest["logits"].numpy()], axis=1)
out["tf2_greedy"] = sig["generate"](tokens=tf.constant(prompts), state=tf.zeros((2, state_width)),
                                    max_new_tokens=new, **sampling)["tokens"].numpy()
out["tf2_text"] = sig["generate_text"](prompt=tf.constant(texts), max_new_tokens=new, **sampling)["text"].numpy()

with tf.compat.v1.Session(graph=tf.Graph()) as session:
    meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], export_dir)

    def run(name, **inputs):
        signature = meta_graph.signature_def[name]
        fetches = {key: info.name for key, info in signature.outputs.items()}
        return session.run(fetches, {signature.inputs[key].name: value for key, value in inputs.items()})

    out["tf1_state_shape"] = [d.size for d in meta_graph.signature_def["step"].inputs["state"].tensor_shape.dim]
    out["tf1_logits"] = run("serving_default", tokens=tokens)["logits"]
    first = run("step", tokens=tokens[:, :3], state=np.zeros((2, state_width), np.float32))
    rest = run("step", tokens=tokens[:, 3:], state=first["state"])
    out["tf1_step_logits"] = np.concatenate([first["logits"], rest["logits"]], axis=1)
    greedy = run("generate", tokens=prompts, state=np.zeros((2, state_width), np.float32),
                 max_new_tokens=new, **sampling)
    out["tf1_greedy"] = greedy["tokens"]
    more = run("generate", tokens=greedy["tokens"][:, -1:], state=greedy["state"], max_new_tokens=np.int32(3),
               **sampling)
    out["tf1_continued"] = more["tokens"]
    out["tf1_text"] = run("generate_text", prompt=np.array(texts, dtype=object), max_new_tokens=new,
                          **sampling)["text"]
    encoded = run("encode", text=np.array(texts, dtype=object))
    out["tf1_encoded"], out["tf1_lengths"] = encoded["tokens"], encoded["lengths"]
    out["tf1_decoded"] = run("decode", tokens=tokens)["text"]

imported = sorted(m for m in sys.modules if m.split(".")[0] in PROJECT_PACKAGES)
assert not imported, imported
np.savez(outputs_path, **out)
print("ok")
"""


def five_cell_chain(vocab_size):
    """Every cell of the package in one chain language model."""
    tokens = keras.Input((None,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(vocab_size, 6, name="embedding")(tokens)
    stack = [
        Recurrent("rnn", 5, name="rnn"),
        Recurrent("lstm", 4, num_layers=2, name="lstm"),
        Recurrent("gru", 6, reset_after=False, name="gru"),
        Recurrent("peephole_lstm", 5, name="peephole"),
        Recurrent("coupled_lstm", 4, name="coupled"),
    ]
    for layer in stack:
        x, _ = layer(x)
    logits = keras.layers.Dense(vocab_size, name="logits")(x)
    return keras.Model(tokens, logits, name="five_cells")


def _build(path):
    keras.utils.set_random_seed(5)
    vocabulary = Vocabulary.build(CORPUS, level="char")
    model = five_cell_chain(len(vocabulary))
    export_language_model(model, vocabulary, str(path / "export"))  # verified in the TF1 loader too
    tokens = np.random.default_rng(5).integers(1, len(vocabulary), (2, 8)).astype(np.int32)
    prompts = np.stack([vocabulary.encode(text) for text in PROMPTS])  # (2, 8)
    np.savez(
        path / "inputs.npz",
        tokens=tokens,
        prompts=prompts,
        texts=np.array(PROMPTS),
        greedy_tokens=GREEDY_TOKENS,
        state_width=STATE_WIDTH,
    )
    np.savez(
        path / "oracle.npz",
        logits=keras_logits(model, tokens),
        greedy=python_greedy(model, prompts, GREEDY_TOKENS + 3),
    )
    outputs = path / "outputs.npz"
    stdout = run_without_project(
        CLIENT,
        only_version(path / "export"),
        path / "inputs.npz",
        outputs,
        ",".join(PROJECT_PACKAGES),
        cwd=path,
    )
    assert stdout.strip().endswith("ok")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    path = build_once(shared_root(tmp_path_factory), "five-cell-chain", _build)
    return (
        dict(np.load(path / "outputs.npz", allow_pickle=True)),
        dict(np.load(path / "oracle.npz")),
        dict(np.load(path / "inputs.npz")),
    )


@pytest.mark.parametrize("loader", ["tf2", "tf1"])
def test_logits_of_serving_default_and_chunked_step_equal_keras(results, loader):
    out, oracle, _ = results
    np.testing.assert_allclose(out[f"{loader}_logits"], oracle["logits"], atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(out[f"{loader}_step_logits"], oracle["logits"], atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("loader", ["tf2", "tf1"])
def test_greedy_generate_and_generate_text_equal_python_greedy(results, loader):
    out, oracle, _ = results
    vocab = Vocabulary.build(CORPUS, level="char")
    np.testing.assert_array_equal(out[f"{loader}_greedy"], oracle["greedy"][:, :GREEDY_TOKENS])
    assert [t.decode() for t in out[f"{loader}_text"]] == [
        vocab.decode(row) for row in oracle["greedy"][:, :GREEDY_TOKENS]
    ]


def test_tf1_generate_continues_from_the_returned_state(results):
    out, oracle, _ = results
    np.testing.assert_array_equal(out["tf1_continued"], oracle["greedy"][:, GREEDY_TOKENS:])


def test_tf1_encode_decode_and_static_state_width(results):
    out, _, inputs = results
    vocab = Vocabulary.build(CORPUS, level="char")
    for row, text in enumerate(PROMPTS):
        np.testing.assert_array_equal(out["tf1_encoded"][row, : out["tf1_lengths"][row]], vocab.encode(text))
    assert [t.decode() for t in out["tf1_decoded"]] == [vocab.decode(row) for row in inputs["tokens"]]
    assert list(out["tf1_state_shape"]) == [-1, int(inputs["state_width"])]


def test_the_clean_process_cannot_import_the_project(tmp_path):
    probe = "try:\n    import training.vocab\nexcept ImportError:\n    print('blocked')\n"
    assert run_without_project(probe, cwd=tmp_path).strip() == "blocked"
