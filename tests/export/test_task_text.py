"""`seq2seq` and `classify` runs export text signatures beside their id ones.

Both tasks are trained on token ids of a character vocabulary (vocab.json),
so their exports carry it: `translate_text` (seq2seq: text → text) and
`classify_text` (classify: text → label, probabilities). A process that
imports no project code loads each export and calls the text signature and
the unchanged `serving_default`; the oracles are the Keras models
themselves, called on the ids the Python `Vocabulary` gives (seq2seq:
greedy decoding by re-running the teacher-forced model on the whole growing
target, cut at the end token).
"""

import json
import os

import keras
import numpy as np

from rnnserve.models import build_classifier, build_seq2seq
from rnnserve.training.export import export_run
from rnnserve.training.tasks import classify, seq2seq
from rnnserve.training.tasks.examples import padded
from rnnserve.training.vocab import Vocabulary
from tests.export.artifacts import only_version, run_without_project, write_run

CLIENT = r"""
import json, sys
import numpy as np
import tensorflow as tf

export_dir, signature, texts, ids = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
signatures = tf.saved_model.load(export_dir).signatures
text_out = {k: v.numpy().tolist() for k, v in signatures[signature](text=tf.constant(texts)).items()}
id_input = "source" if signature == "translate_text" else "tokens"
ids_out = {k: v.numpy().tolist() for k, v in signatures["serving_default"](**{id_input: tf.constant(ids, tf.int32)}).items()}
print(json.dumps({"text": {k: [x.decode() if isinstance(x, bytes) else x for x in v] for k, v in text_out.items()},
                  "ids": ids_out, "signatures": sorted(signatures)}))
"""


def _write_task_run(run_dir, task, model, vocabulary, builder, task_options):
    write_run(run_dir, model, vocabulary, task=task, builder=builder)
    with open(os.path.join(run_dir, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    with open(os.path.join(run_dir, "config.json"), "w", encoding="utf-8") as f:
        json.dump({**config, "task_options": task_options}, f)


def _call_cleanly(version_dir, signature, texts, ids, tmp_path):
    out = run_without_project(
        CLIENT, version_dir, signature, json.dumps(texts), json.dumps(ids.tolist()), cwd=tmp_path
    )
    return json.loads(out.splitlines()[-1])


def _python_translate(model, source, start_id, length):
    target = np.full((len(source), 1), start_id, np.int32)
    for _ in range(length):
        logits = np.asarray(model({"source": source, "target_in": target}, training=False))  # (B, t, V)
        target = np.concatenate([target, logits[:, -1].argmax(-1)[:, None].astype(np.int32)], axis=1)
    return target[:, 1:]


def test_a_seq2seq_export_translates_text_like_its_model(tmp_path):
    keras.utils.set_random_seed(11)
    vocab = seq2seq.VOCAB
    model = build_seq2seq(len(vocab), len(vocab), cell="gru", units=12, embedding_dim=6)
    options = seq2seq.Seq2Seq().task_options()
    _write_task_run(tmp_path / "run", "seq2seq", model, vocab, "seq2seq", options)
    version = export_run(tmp_path / "run", tmp_path / "base")
    assert version == only_version(tmp_path / "base")

    texts = ["123", "98765", "40"]
    source = padded([vocab.encode(text) for text in texts], 5)
    out = _call_cleanly(version, "translate_text", texts, source, tmp_path)
    assert {"serving_default", "translate_text"} <= set(out["signatures"])
    greedy = _python_translate(model, source, options["start_id"], options["output_length"])
    expected = [vocab.decode(row).split(seq2seq.END)[0] for row in greedy]
    assert out["text"]["text"] == expected
    ended = np.cumsum(greedy == options["end_id"], axis=1) - (greedy == options["end_id"]) > 0
    np.testing.assert_array_equal(out["ids"]["tokens"], np.where(ended, 0, greedy))  # unchanged


def test_a_classify_export_labels_text_like_its_model(tmp_path):
    keras.utils.set_random_seed(12)
    vocab = Vocabulary(tokens=("[UNK]", *classify.SYMBOLS), level="char")  # what Classify.prepare builds
    model = build_classifier(3, vocab_size=len(vocab), cell="lstm", units=6, embedding_dim=4)
    _write_task_run(tmp_path / "run", "classify", model, vocab, "classifier", {})
    version = export_run(tmp_path / "run", tmp_path / "base")

    texts = ["abcab", "ccbac", "bbbbba"]
    ids = padded([vocab.encode(text) for text in texts], 6)
    out = _call_cleanly(version, "classify_text", texts, ids, tmp_path)
    logits = np.asarray(model(ids, training=False))  # (B, C)
    probabilities = np.exp(logits - logits.max(-1, keepdims=True))
    probabilities /= probabilities.sum(-1, keepdims=True)
    assert out["text"]["label"] == [classify.SYMBOLS[i] for i in logits.argmax(-1)]
    np.testing.assert_allclose(out["text"]["probabilities"], probabilities, atol=1e-6, rtol=0)
    np.testing.assert_allclose(out["ids"]["logits"], logits, atol=1e-5, rtol=0)  # unchanged
