"""`seq2seq` (N→M): reverse a string of 3–8 digits with an encoder–decoder
(Sutskever et al., 2014), teacher forcing in training, greedy decoding after.

Strings are written with the task's vocabulary: digits, "^" (start) and "$"
(end); the target "321$" of source "123" is read by the decoder as "^321".
Quality: exact-match accuracy of greedy decoding on validation strings,
against copying the source unchanged (right only for palindromes).
"""

from __future__ import annotations

import os
import re

import keras
import numpy as np
import tensorflow as tf

from rnnserve import contract
from rnnserve.models import greedy_decode
from rnnserve.training.config import Seq2SeqConfig
from rnnserve.training.export import Endpoint, TaskExport, register_task_exporter
from rnnserve.training.export.text import VocabularyTables
from rnnserve.training.export.vocab_files import read_vocabulary
from rnnserve.training.tasks.examples import examples_data, padded
from rnnserve.training.tasks.greedy_export import greedy_decoding_export
from rnnserve.training.tasks.task import Task, optimizer
from rnnserve.training.vocab import UNK_ID, Vocabulary

DIGITS = "0123456789"
START, END = "^", "$"
MIN_LENGTH, MAX_LENGTH = 3, 8
NUM_EXAMPLES = 12000
VOCAB = Vocabulary(tokens=("[UNK]", *DIGITS, START, END), level="char")


def make_examples(count, rng):
    """Source strings and their reversals: dict of `source`, `target_in`; targets."""
    sources = [
        "".join(rng.choice(list(DIGITS), size=rng.integers(MIN_LENGTH, MAX_LENGTH + 1))) for _ in range(count)
    ]
    source = padded([VOCAB.encode(s) for s in sources], MAX_LENGTH)
    target_in = padded([VOCAB.encode(START + s[::-1]) for s in sources], MAX_LENGTH + 1)
    target_out = padded([VOCAB.encode(s[::-1] + END) for s in sources], MAX_LENGTH + 1)
    return {"source": source, "target_in": target_in}, target_out, sources


def decode_strings(token_rows):
    """Greedy outputs → strings, cut at the end token."""
    return [VOCAB.decode(row).split(END)[0] for row in token_rows]


def export_seq2seq(model, config, run_dir):
    """Two signatures:

    - `serving_default`: `source` (B,S) digit ids → `tokens` (B,M), the
      reversal then "$" (then zeros);
    - `translate_text`: `text` (B,) strings → `text` (B,), their reversals
      (the greedy output up to "$"), through the run's vocabulary.
    """
    options = config["task_options"]
    spec = tf.TensorSpec((None, None), tf.int32)
    exported = greedy_decoding_export(
        model, "source", spec, options["start_id"], options["output_length"], options["end_id"]
    )
    vocabulary = read_vocabulary(os.path.join(run_dir, "vocab.json"))
    tables = VocabularyTables(vocabulary)
    serve = exported.endpoints[0].fn
    until_end = "(?s)" + re.escape(vocabulary.tokens[options["end_id"]]) + ".*"

    def translate_text(text):
        source, _ = tables.encode_rows(text, contract.TEXT)  # (B, S), right-padded with 0
        decoded = tables.decode(serve(source=source)[contract.TOKENS])  # (B,)
        return {contract.TEXT: tf.strings.regex_replace(decoded, until_end, "")}

    text = Endpoint(
        contract.TRANSLATE_TEXT,
        translate_text,
        {contract.TEXT: tf.TensorSpec((None,), tf.string)},
        [{contract.TEXT: np.array([b"123", b"4567"], dtype=object)}],
    )
    return TaskExport(
        [*exported.endpoints, text],
        metadata={**exported.metadata, contract.VOCAB_LEVEL: vocabulary.level},
        track=[tables.table],
    )


register_task_exporter("seq2seq", export_seq2seq)


class Seq2Seq(Task):
    """N→M: reverse digit strings with an encoder–decoder (see the module docstring)."""

    config_class = Seq2SeqConfig
    quality_key = "val_loss"
    model_builder = "seq2seq"

    def prepare(self, config):
        inputs, targets, sources = make_examples(NUM_EXAMPLES, np.random.default_rng(config.seed))
        data = examples_data(inputs, targets, config, MAX_LENGTH + 1, val_fraction=0.1, vocab=VOCAB)
        data.extras["val_strings"] = sources[len(data.extras["train_y"]) :]
        return data

    def model_kwargs(self, config, data):
        return {
            "source_vocab_size": len(VOCAB),
            "target_vocab_size": len(VOCAB),
            "cell": config.cell,
            "units": config.units,
            "num_layers": config.layers,
        }

    def task_options(self):
        return {
            "start_id": VOCAB.id_of(START),
            "end_id": VOCAB.id_of(END),
            "output_length": MAX_LENGTH + 1,
        }

    def compile(self, model, config):
        model.compile(
            optimizer=optimizer(config),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=UNK_ID),
        )

    def evaluate(self, model, config, data):
        options = self.task_options()
        tokens = greedy_decode(
            model, data.extras["val_x"]["source"], options["start_id"], options["output_length"]
        )
        outputs = decode_strings(np.asarray(tokens))
        strings = data.extras["val_strings"]
        exact = float(np.mean([out == s[::-1] for out, s in zip(outputs, strings)]))
        baseline = float(np.mean([s == s[::-1] for s in strings]))
        if config.verbose != 0:
            examples = ", ".join(f"{s}→{o}" for s, o in list(zip(strings, outputs))[:4])
            print(f"Exact match {exact:.1%} (copy baseline {baseline:.1%}); e.g. {examples}", flush=True)
        return {"exact_match": exact, "baseline_exact_match": baseline}
