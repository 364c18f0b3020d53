"""The four implementations compared, as the same language model
Embedding(V, E) → one recurrent layer (H) → Dense(V), trained with Adam on
cross-entropy over random tokens (data loading is not timed):

| name      | recurrent layer                                                |
|-----------|----------------------------------------------------------------|
| `fused`   | `models.Recurrent(implementation="fused")`: our kernel, hand-written BPTT |
| `cell`    | `models.Recurrent(implementation="cell")`: `keras.layers.RNN(our cell)` |
| `keras`   | Keras' built-in `keras.layers.LSTM` / `GRU`                     |
| `torch`   | PyTorch CPU `nn.LSTM` / `nn.GRU`                                |

Each contender offers `train()` (one optimizer step, forward + backward +
Adam) and `infer()` (one forward pass with `training=False` /
`torch.inference_mode()`), both running to completion before they return.
The Keras ones are `tf.function`s compiled once, like `model.fit`'s step.
TF and torch are imported only by the contenders that need them.
"""

from __future__ import annotations

import dataclasses

import numpy as np

CONTENDERS = ("fused", "cell", "keras", "torch")


@dataclasses.dataclass(frozen=True)
class Config:
    """One benchmark configuration (the main one, E=64, H=256, B=32, T=64, by default)."""

    cell: str = "lstm"  # "lstm" or "gru" (both have Keras and torch built-ins)
    batch: int = 32
    steps: int = 64  # T, tokens per sequence
    embedding: int = 64
    units: int = 256
    vocab: int = 65  # tinyshakespeare's characters

    @property
    def label(self):
        return f"{self.cell} B={self.batch} T={self.steps} E={self.embedding} H={self.units}"

    @property
    def tokens(self):
        """Tokens per step (B·T)."""
        return self.batch * self.steps


def _data(config, seed=0):
    rng = np.random.default_rng(seed)
    shape = (config.batch, config.steps)
    return (
        rng.integers(0, config.vocab, shape).astype("int32"),
        rng.integers(0, config.vocab, shape).astype("int32"),
    )


class KerasContender:
    """Our `Recurrent` (fused or cell path) or Keras' built-in layer."""

    def __init__(self, kind, config):
        import keras
        import tensorflow as tf

        if kind == "keras":
            builtin = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}[config.cell]
            tokens = keras.Input((None,), dtype="int32")
            x = keras.layers.Embedding(config.vocab, config.embedding)(tokens)
            x = builtin(config.units, return_sequences=True)(x)
            model = keras.Model(tokens, keras.layers.Dense(config.vocab)(x))
        else:
            from rnnserve.models import build_language_model

            model = build_language_model(
                config.vocab,
                cell=config.cell,
                units=config.units,
                embedding_dim=config.embedding,
                implementation=kind,
            )
        optimizer = keras.optimizers.Adam(1e-3)
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        x, y = (tf.constant(a) for a in _data(config))

        @tf.function
        def train_step():
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x, training=True))
            optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
            return loss

        self.train_step = train_step
        self.infer_step = tf.function(lambda: model(x, training=False))

    def train(self):
        self.train_step()

    def infer(self):
        self.infer_step()


class TorchContender:
    """PyTorch's `nn.LSTM` / `nn.GRU` on CPU, `batch_first=True`."""

    def __init__(self, config):
        import torch

        recurrent = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[config.cell]
        self.torch = torch
        self.modules = torch.nn.ModuleDict(
            {
                "embedding": torch.nn.Embedding(config.vocab, config.embedding),
                "recurrent": recurrent(config.embedding, config.units, batch_first=True),
                "logits": torch.nn.Linear(config.units, config.vocab),
            }
        )
        self.optimizer = torch.optim.Adam(self.modules.parameters(), 1e-3)
        self.x, self.y = (torch.from_numpy(a).long() for a in _data(config))
        self.vocab = config.vocab

    def _logits(self):
        outputs, _ = self.modules["recurrent"](self.modules["embedding"](self.x))  # (B, T, H)
        return self.modules["logits"](outputs)  # (B, T, V)

    def train(self):
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.torch.nn.functional.cross_entropy(
            self._logits().reshape(-1, self.vocab), self.y.reshape(-1)
        )
        loss.backward()
        self.optimizer.step()

    def infer(self):
        with self.torch.inference_mode():
            self._logits()


def make(kind, config):
    """The contender `kind` (one of `CONTENDERS`) for `config`."""
    if kind == "torch":
        return TorchContender(config)
    if kind in ("fused", "cell", "keras"):
        return KerasContender(kind, config)
    raise ValueError(f"Unknown contender {kind!r}; expected one of {CONTENDERS}.")
