"""`charlm`: a character (or word) language model of a text corpus.

The loss is the softmax cross-entropy of the next token, averaged over time
and batch (nats per token), so validation perplexity is exp(val_loss). The
corpus is `--corpus PATH` or the built-in one (training/corpus.py); the last
`--val-fraction` of it is validation. `--batching random` trains on
independent windows from a zero state; `--batching sequential` trains a
stateful model whose state flows from batch to batch within an epoch
(training/partitioning.py). Every epoch ends with a text sample.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from rnnserve.errors import UserError
from rnnserve.models import build_language_model
from rnnserve.training.config import CharLMConfig
from rnnserve.training.corpus import load_corpus
from rnnserve.training.metrics import Perplexity
from rnnserve.training.partitioning import split_stream, training_batches, validation_batches
from rnnserve.training.tasks.task import Task, TaskData, copy_trainable_weights, optimizer
from rnnserve.training.vocab import Vocabulary


def unigram_entropy(tokens, vocab_size):
    """Entropy (nats) of the token frequencies: the loss of the best model
    that ignores context, the bar any language model must beat."""
    counts = np.bincount(np.asarray(tokens), minlength=vocab_size).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


class CharLM(Task):
    """A character or word language model of a text corpus (see the module docstring)."""

    config_class = CharLMConfig
    quality_key = "val_perplexity"
    model_builder = "language_model"

    def prepare(self, config):
        if config.batching == "sequential" and config.strategy != "default":
            raise UserError(
                f"--batching sequential needs --strategy default: its stateful model keeps one state per row "
                f"of the batch, which --strategy {config.strategy} would split across replicas."
            )
        text = load_corpus(config.corpus)
        vocab = Vocabulary.build(text, level=config.level, max_size=config.max_vocab)
        train_tokens, val_tokens = split_stream(vocab.encode(text), config.val_fraction)
        train, steps = training_batches(
            train_tokens, config.batching, config.seq_len, config.batch_size, config.seed
        )
        return TaskData(
            train=train,
            steps_per_epoch=steps,
            validation=validation_batches(val_tokens, config.batching, config.seq_len, config.batch_size),
            tokens_per_batch=config.batch_size * config.seq_len,
            vocab=vocab,
            extras={"unigram_entropy": unigram_entropy(train_tokens, len(vocab))},
        )

    def model_kwargs(self, config, data):
        return {
            "vocab_size": len(data.vocab),
            "cell": config.cell,
            "units": config.units,
            "num_layers": config.layers,
            "embedding_dim": config.embedding_dim,
            "dropout": config.dropout,
        }

    def build_model(self, config, data):
        stateful = config.batching == "sequential"
        return build_language_model(
            **self.model_kwargs(config, data),
            stateful=stateful,
            batch_size=config.batch_size if stateful else None,
        )

    def compile(self, model, config):
        model.compile(
            optimizer=optimizer(config),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=[Perplexity()],
        )

    def callbacks(self, config, data, run):
        from rnnserve.training.callbacks import ResetStates
        from rnnserve.training.epoch_samples import SampleText

        extra = [SampleText(self, config, data)]
        if config.batching == "sequential":
            extra.insert(0, ResetStates())
        return extra

    def final_model(self, model, config, data):
        """The stateless twin of a stateful model (same weights)."""
        if config.batching != "sequential":
            return model
        twin = build_language_model(**self.model_kwargs(config, data))
        copy_trainable_weights(twin, model)
        self.compile(twin, config)
        return twin

    def evaluate(self, model, config, data):
        # The final model is stateless: every validation window starts fresh.
        val_loss = float(model.evaluate(data.validation, verbose=0)[0])
        return {
            "val_loss": val_loss,
            "val_perplexity": math.exp(val_loss),
            "unigram_entropy": data.extras["unigram_entropy"],
        }
