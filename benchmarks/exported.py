"""The language model the generation and serving benchmarks export and call:
the throughput benchmark's main configuration (Embedding(65, 64) → LSTM(256)
→ Dense(65)) with random weights, exported under the serving contract."""

from __future__ import annotations

import string

from rnnserve.benchmarks.contenders import Config

MODEL = Config()
MAX_NEW_TOKENS = 1024


def vocabulary():
    """64 printable characters plus `[UNK]`: V = 65, like the main configuration."""
    from rnnserve.training.vocab import UNK, Vocabulary

    characters = (string.ascii_letters + string.digits + " .")[: MODEL.vocab - 1]
    return Vocabulary(tokens=(UNK, *characters), level="char")


def export(directory):
    """Builds the model and exports it as version 1 under `directory`; returns the version path."""
    import keras

    from rnnserve.models import build_language_model
    from rnnserve.training.export import export_language_model

    keras.utils.set_random_seed(0)
    vocab = vocabulary()
    model = build_language_model(
        len(vocab), cell=MODEL.cell, units=MODEL.units, embedding_dim=MODEL.embedding
    )
    return export_language_model(model, vocab, directory, max_new_tokens_limit=MAX_NEW_TOKENS)
