"""Text sampled from a language model while it trains: one sample per epoch.

Sampling is the exported `generate` signature's own graph
(`training.export.language_model`): the same temperature, top-k, `[UNK]`
exclusion and seeded draws a served model uses, traced once per callback.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from rnnserve.models.state import state_size
from rnnserve.training.export.language_model import LanguageModelSignatures
from rnnserve.training.tasks.task import copy_trainable_weights


class Sampler:
    """Continues prompts with a (stateless) language model, in-graph.

    Args:
        model: A chain language model.
        vocab: Its `Vocabulary`.
        max_length: The most tokens one call may generate.

    Example:

    ```python
    Sampler(model, vocab, 200)("The ", 200, temperature=0.8, seed=0)
    # 'The quick ...'
    ```
    """

    def __init__(self, model, vocab, max_length):
        self.vocab = vocab
        self.width = state_size(model)
        self._generate = tf.function(
            LanguageModelSignatures(model, vocab, max_new_tokens_limit=max_length).generate
        )

    def __call__(self, prompt, length, temperature, seed, top_k=0):
        tokens = self.vocab.encode(prompt or " ")[None, :]  # (1, T)
        out = self._generate(
            tokens,
            np.zeros((1, self.width), np.float32),
            np.int32(length),
            np.float32(temperature),
            np.int32(top_k),
            np.int64(seed),
        )
        return prompt + self.vocab.decode(out["tokens"][0].numpy())


class SampleText(keras.callbacks.Callback):
    """Prints a sample after every epoch, from the task's stateless model."""

    def __init__(self, task, config, data):
        super().__init__()
        self.task, self.config, self.data = task, config, data
        self._stateless = self._sampler = None

    def on_epoch_end(self, epoch, logs=None):
        if self.config.verbose == 0:
            return
        if self._sampler is None:
            self._stateless = self.task.final_model(self.model, self.config, self.data)
            self._sampler = Sampler(self._stateless, self.data.vocab, self.config.sample_length)
        elif self._stateless is not self.model:
            copy_trainable_weights(self._stateless, self.model)
        text = self._sampler(
            self.config.prompt, self.config.sample_length, self.config.temperature, self.config.seed + epoch
        )
        print(f"\n--- sample after epoch {epoch + 1} ---\n{text}\n---", flush=True)
