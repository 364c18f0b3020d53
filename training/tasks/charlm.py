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
from rnnserve.training.arguments import fraction, non_negative_float, positive_int, rate
from rnnserve.training.corpus import load_corpus
from rnnserve.training.metrics import Perplexity
from rnnserve.training.partitioning import SCHEMES, split_stream, training_batches, validation_batches
from rnnserve.training.tasks.base import Task, TaskData, copy_trainable_weights, optimizer
from rnnserve.training.vocab import LEVELS, Vocabulary

DEFAULT_PROMPT = "The "


def unigram_entropy(tokens, vocab_size):
    """Entropy (nats) of the token frequencies: the loss of the best model
    that ignores context, the bar any language model must beat."""
    counts = np.bincount(np.asarray(tokens), minlength=vocab_size).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


class CharLM(Task):
    name = "charlm"
    help = "character/word language model of a corpus (perplexity, sampled text)"
    defaults = {"cell": "lstm", "units": 256, "layers": 1, "epochs": 20, "batch_size": 32, "lr": 2e-3}
    quality_key = "val_perplexity"
    model_builder = "language_model"

    def add_arguments(self, parser):
        parser.add_argument("--corpus", default=None, help="UTF-8 text file (default: the built-in corpus)")
        parser.add_argument(
            "--level", choices=LEVELS, default="char", help="vocabulary level (default: char)"
        )
        parser.add_argument(
            "--max-vocab", type=positive_int, default=None, help="keep the most frequent tokens only"
        )
        parser.add_argument(
            "--seq-len", type=positive_int, default=64, help="T, tokens per window (default: 64)"
        )
        parser.add_argument(
            "--batching", choices=SCHEMES, default="random", help="partitioning (default: random)"
        )
        parser.add_argument(
            "--val-fraction", type=fraction, default=0.1, help="last part held out (default: 0.1)"
        )
        parser.add_argument("--embedding-dim", type=positive_int, default=64, help="E (default: 64)")
        parser.add_argument("--dropout", type=rate, default=0.0, help="between recurrent layers (default: 0)")
        parser.add_argument("--prompt", default=DEFAULT_PROMPT, help="start of the per-epoch sample")
        parser.add_argument(
            "--sample-length", type=positive_int, default=200, help="tokens sampled per epoch"
        )
        parser.add_argument(
            "--temperature", type=non_negative_float, default=0.8, help="of the per-epoch sample"
        )

    def prepare(self, args):
        if args.batching == "sequential" and args.strategy != "default":
            raise UserError(
                f"--batching sequential needs --strategy default: its stateful model keeps one state per row "
                f"of the batch, which --strategy {args.strategy} would split across replicas."
            )
        text = load_corpus(args.corpus)
        vocab = Vocabulary.build(text, level=args.level, max_size=args.max_vocab)
        train_tokens, val_tokens = split_stream(vocab.encode(text), args.val_fraction)
        train, steps = training_batches(train_tokens, args.batching, args.seq_len, args.batch_size, args.seed)
        return TaskData(
            train=train,
            steps_per_epoch=steps,
            validation=validation_batches(val_tokens, args.batching, args.seq_len, args.batch_size),
            tokens_per_batch=args.batch_size * args.seq_len,
            vocab=vocab,
            extras={"unigram_entropy": unigram_entropy(train_tokens, len(vocab))},
        )

    def model_kwargs(self, args, data):
        return {
            "vocab_size": len(data.vocab),
            "cell": args.cell,
            "units": args.units,
            "num_layers": args.layers,
            "embedding_dim": args.embedding_dim,
            "dropout": args.dropout,
        }

    def build_model(self, args, data):
        stateful = args.batching == "sequential"
        return build_language_model(
            **self.model_kwargs(args, data),
            stateful=stateful,
            batch_size=args.batch_size if stateful else None,
        )

    def compile(self, model, args):
        model.compile(
            optimizer=optimizer(args),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=[Perplexity()],
        )

    def callbacks(self, args, data, run):
        from rnnserve.training.callbacks import ResetStates
        from rnnserve.training.epoch_samples import SampleText

        extra = [SampleText(self, args, data)]
        if args.batching == "sequential":
            extra.insert(0, ResetStates())
        return extra

    def final_model(self, model, args, data):
        """The stateless twin of a stateful model (same weights)."""
        if args.batching != "sequential":
            return model
        twin = build_language_model(**self.model_kwargs(args, data))
        copy_trainable_weights(twin, model)
        self.compile(twin, args)
        return twin

    def evaluate(self, model, args, data):
        # The final model is stateless: every validation window starts fresh.
        val_loss = float(model.evaluate(data.validation, verbose=0)[0])
        return {
            "val_loss": val_loss,
            "val_perplexity": math.exp(val_loss),
            "unigram_entropy": data.extras["unigram_entropy"],
        }
