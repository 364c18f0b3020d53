"""The language-model signatures of docs/savedmodel.md, built on the model's own layers.

| signature | inputs → outputs |
|---|---|
| `serving_default` | `tokens` (B,T) → `logits` (B,T,V) |
| `step` | `tokens` (B,T), `state` (B,S) → `logits` (B,T,V), `state` (B,S) |
| `generate` | `tokens`, `state`, `max_new_tokens`, `temperature`, `top_k`, `seed` → `tokens` (B,N), `state` |
| `generate_text` | `prompt` (B,), `max_new_tokens`, `temperature`, `top_k`, `seed` → `text` (B,) |
| `encode` | `text` (B,) → `tokens` (B,T), `lengths` (B,) |
| `decode` | `tokens` (B,N) → `text` (B,) |

Every signature runs the chain model through `models.runner.run_language_model`
(so the state packing comes from the cells' `state_size`, and a faster
`Recurrent` kernel is picked up automatically). `generate` consumes the
prompt in one call, then samples inside a `tf.while_loop`:

    logits, state = run(tokens, state)            # the prompt
    x_0 = pick(logits[:, -1], position 0)
    for i in 1 .. N-1:
        logits, state = run(x_{i-1}, state)
        x_i = pick(logits[:, -1], position i)
    return x_0 .. x_{N-1}, state                  # state after x_{N-2}

so `generate(x_{N-1}, state)` continues the sequence. `generate_text`
consumes right-padded prompts of different lengths one step at a time,
keeping each row's state and logits from its last real token.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from rnnserve import contract, sampling
from rnnserve.models.cells import cell_name
from rnnserve.models.runner import read_weights, run_language_model, run_language_model_token
from rnnserve.models.state import (
    pack_cell_states,
    recurrent_layers,
    state_layout,
    state_size,
    unpack_cell_states,
)
from rnnserve.training.export import DEFAULT_MAX_NEW_TOKENS_LIMIT
from rnnserve.training.export.checks import (
    check_sampling,
    check_state,
    check_token_ids,
    check_tokens,
    guarded,
)
from rnnserve.training.export.text import VocabularyTables
from rnnserve.training.export.writer import Endpoint

# Sizes of the warmup requests: a short prompt and a few new tokens.
_WARMUP_STEPS, _WARMUP_NEW_TOKENS = 4, 2


def _specs(state_width, *names):
    every = {
        contract.TOKENS: tf.TensorSpec((None, None), tf.int32),
        contract.STATE: tf.TensorSpec((None, state_width), tf.float32),
        contract.MAX_NEW_TOKENS: tf.TensorSpec((), tf.int32),
        contract.TEMPERATURE: tf.TensorSpec((), tf.float32),
        contract.TOP_K: tf.TensorSpec((), tf.int32),
        contract.SEED: tf.TensorSpec((), tf.int64),
        contract.PROMPT: tf.TensorSpec((None,), tf.string),
        contract.TEXT: tf.TensorSpec((None,), tf.string),
    }
    return {name: every[name] for name in names}


class LanguageModelSignatures:
    """The six signature functions of one chain language model.

    Args:
        model: A chain model (`Embedding` → `Recurrent`… → `Dense`), e.g.
            from `build_language_model` or `as_language_model`.
        vocabulary: The `Vocabulary` whose ids the model was trained on.
        max_new_tokens_limit: The largest `max_new_tokens` accepted.
        tables: The in-graph text tables (`text.py`) of `generate_text`,
            `encode` and `decode`. Default: `VocabularyTables(vocabulary)`.

    Example:

    ```python
    signatures = LanguageModelSignatures(model, vocab, 256)
    write_savedmodel(base, signatures.endpoints(), metadata, track=signatures.track())
    ```
    """

    def __init__(self, model, vocabulary, max_new_tokens_limit=DEFAULT_MAX_NEW_TOKENS_LIMIT, tables=None):
        self.model = model
        self.vocab_size = len(vocabulary)
        self.state_size = state_size(model)
        self.limit = int(max_new_tokens_limit)
        self.vocab_level = vocabulary.level
        self.unk_id, self.padding_id = vocabulary.unk_id, vocabulary.padding_id
        self.reserved_ids = vocabulary.reserved_ids  # never generated
        self.tables = VocabularyTables(vocabulary) if tables is None else tables

    def track(self):
        """What the export must track: the model's variables and the text lookup."""
        return [self.model, self.tables.table]

    def metadata(self, task):
        """The language-model facts of `rnnserve.json` (docs/savedmodel.md).

        `cell` and `units` are single values when every `Recurrent` of the
        chain agrees, else one value per `Recurrent`; `layers` counts all
        recurrent layers; `recurrent` lists each `Recurrent`.
        """
        stack = [
            {
                "cell": cell_name(layer.cell_class) or layer.cell_class.__name__,
                "layers": layer.num_layers,
                "units": layer.units,
                "bidirectional": layer.bidirectional,
            }
            for layer in recurrent_layers(self.model)
        ]

        def common(key):
            values = [entry[key] for entry in stack]
            return values[0] if len(set(values)) == 1 else values

        embedding = next(layer for layer in self.model.layers if isinstance(layer, keras.layers.Embedding))
        return {
            contract.TASK: task,
            "cell": common("cell"),
            "layers": sum(entry["layers"] for entry in stack),
            "units": common("units"),
            "bidirectional": False,
            "embedding_dim": int(embedding.output_dim),
            contract.VOCAB_SIZE: self.vocab_size,
            contract.VOCAB_LEVEL: self.vocab_level,
            contract.UNK_ID: self.unk_id,
            contract.PADDING_ID: self.padding_id,
            contract.STATE_SIZE: self.state_size,
            contract.STATE_LAYOUT: state_layout(self.model),
            contract.MAX_NEW_TOKENS_LIMIT: self.limit,
            "recurrent": stack,
        }

    # -- shared pieces -------------------------------------------------------

    def _run(self, tokens, state=None):
        """`run_language_model` with the static V and S set on its outputs.

        One token per sequence (T = 1: how a streaming client calls `step`,
        and how `generate` continues) takes a branch built for T = 1, where
        each layer is one cell call instead of a time loop.
        """

        def run(tokens):
            logits, new_state = run_language_model(self.model, tokens, state)
            logits = tf.ensure_shape(logits, (None, None, self.vocab_size))  # (B, T, V)
            return logits, tf.ensure_shape(new_state, (None, self.state_size))  # (B, S)

        if tokens.shape[1] is not None:
            return run(tokens)
        one_token = tf.shape(tokens)[1] == 1
        return tf.cond(one_token, lambda: run(tf.reshape(tokens, (-1, 1))), lambda: run(tokens))

    def _checked_tokens(self, tokens, state=None):
        checks = check_tokens(tokens, self.vocab_size)
        if state is None:
            return guarded([tokens], checks)[0], None
        checks += check_state(state, tokens, self.state_size)
        return tuple(guarded([tokens, state], checks))

    def _checked_sampling(self, max_new_tokens, temperature, top_k, seed):
        # Accept shape (1,) as well as () for the scalars (REST clients often send [n]).
        scalars = [tf.reshape(x, []) for x in (max_new_tokens, temperature, top_k, seed)]
        checks = check_sampling(*scalars[:3], self.limit, self.vocab_size)
        return guarded(scalars, checks)

    def _sample(self, logits, state, max_new_tokens, temperature, top_k, seed):
        """`(B, V)` logits of the last consumed token → `(tokens (B, N), state)`.

        The picker is chosen once per request (`sampling.mode`): each of the
        three branches runs its own token loop. The loop carries the cells'
        own states (`unpack_cell_states`), packed once at the end, and uses
        the model's weights read once before it.
        """
        model = self.model
        pickers = sampling.pickers(
            temperature, top_k, seed, max_new_tokens, self.vocab_size, masked_ids=self.reserved_ids
        )
        states, weights = unpack_cell_states(model, state), read_weights(model)

        def generation(pick):
            def run():
                first = pick(logits, 0)  # (B,)
                generated = tf.TensorArray(
                    tf.int32, size=max_new_tokens, element_shape=tf.TensorShape([None])
                )

                def body(i, token, states, generated):
                    logits, states = run_language_model_token(model, token, states, weights)  # (B, V)
                    token = pick(logits, i)  # (B,)
                    return i + 1, token, states, generated.write(i, token)

                _, _, final, generated = tf.while_loop(
                    lambda i, *_: i < max_new_tokens,
                    body,
                    (tf.constant(1), first, states, generated.write(0, first)),
                )
                return generated.stack(), pack_cell_states(model, final)  # (N, B), (B, S)

            return run

        branch = sampling.mode(temperature, top_k, self.vocab_size)
        tokens, state = tf.switch_case(branch, [generation(pick) for pick in pickers])
        return tf.transpose(tokens), tf.ensure_shape(state, (None, self.state_size))  # (B, N), (B, S)

    def _consume_padded(self, tokens, lengths):
        """Runs right-padded prompts from zeros; each row stops at its own length.

        Returns `(logits (B, V) of each row's last token, state (B, S) after it)`.
        """
        model = self.model
        weights = read_weights(model)
        batch = tf.shape(tokens)[0]
        states = unpack_cell_states(model, tf.zeros((batch, self.state_size), tf.float32))
        last = tf.zeros((batch, self.vocab_size), tf.float32)

        def body(t, states, last):
            logits, new_states = run_language_model_token(model, tokens[:, t], states, weights)  # (B, V)
            live = (t < lengths)[:, tf.newaxis]  # (B, 1)

            def keep(new, old):
                return tf.where(live, new, old)

            return t + 1, tf.nest.map_structure(keep, new_states, states), keep(logits, last)

        _, states, last = tf.while_loop(
            lambda t, *_: t < tf.shape(tokens)[1], body, (tf.constant(0), states, last)
        )
        return last, pack_cell_states(model, states)

    # -- the signatures --------------------------------------------------------

    def serving_default(self, tokens):
        tokens, _ = self._checked_tokens(tokens)
        logits, _ = self._run(tokens)
        return {contract.LOGITS: logits}

    def step(self, tokens, state):
        tokens, state = self._checked_tokens(tokens, state)
        logits, state = self._run(tokens, state)
        return {contract.LOGITS: logits, contract.STATE: state}

    def generate(self, tokens, state, max_new_tokens, temperature, top_k, seed):
        tokens, state = self._checked_tokens(tokens, state)
        sampling = self._checked_sampling(max_new_tokens, temperature, top_k, seed)
        logits, state = self._run(tokens, state)  # (B, T, V)
        tokens, state = self._sample(logits[:, -1], state, *sampling)
        return {contract.TOKENS: tokens, contract.STATE: state}

    def generate_text(self, prompt, max_new_tokens, temperature, top_k, seed):
        tokens, lengths = self.tables.encode_rows(prompt, contract.PROMPT, row="prompt")
        sampling = self._checked_sampling(max_new_tokens, temperature, top_k, seed)
        logits, state = self._consume_padded(tokens, lengths)
        generated, _ = self._sample(logits, state, *sampling)
        return {contract.TEXT: self.tables.decode(generated)}

    def encode(self, text):
        tokens, lengths = self.tables.encode(text)
        return {contract.TOKENS: tokens, contract.LENGTHS: lengths}

    def decode(self, tokens):
        (tokens,) = guarded([tokens], check_token_ids(tokens, self.vocab_size))
        return {contract.TEXT: self.tables.decode(tokens)}

    # -- endpoints ---------------------------------------------------------------

    def endpoints(self):
        """The six `Endpoint`s, with warmup requests for `serving_default`, `step` and `generate`."""
        first = len(self.reserved_ids)  # the first id of real text
        prompt = np.arange(_WARMUP_STEPS, dtype=np.int32) % (self.vocab_size - first) + first
        tokens = np.stack([prompt, prompt[::-1]])  # (2, T)
        zeros = np.zeros((2, self.state_size), np.float32)
        sampling = {
            contract.MAX_NEW_TOKENS: np.int32(min(_WARMUP_NEW_TOKENS, self.limit)),
            contract.TEMPERATURE: np.float32(1.0),
            contract.TOP_K: np.int32(0),
            contract.SEED: np.int64(0),
        }
        width = self.state_size
        return [
            Endpoint(
                contract.SERVING_DEFAULT,
                self.serving_default,
                _specs(width, contract.TOKENS),
                [{contract.TOKENS: tokens[:1]}],
            ),
            Endpoint(
                contract.STEP,
                self.step,
                _specs(width, contract.TOKENS, contract.STATE),
                [
                    {contract.TOKENS: tokens[:1], contract.STATE: zeros[:1]},
                    {contract.TOKENS: tokens, contract.STATE: zeros},
                ],
            ),
            Endpoint(
                contract.GENERATE,
                self.generate,
                _specs(
                    width,
                    contract.TOKENS,
                    contract.STATE,
                    contract.MAX_NEW_TOKENS,
                    contract.TEMPERATURE,
                    contract.TOP_K,
                    contract.SEED,
                ),
                [{contract.TOKENS: tokens[:1], contract.STATE: zeros[:1], **sampling}],
            ),
            Endpoint(
                contract.GENERATE_TEXT,
                self.generate_text,
                _specs(
                    width,
                    contract.PROMPT,
                    contract.MAX_NEW_TOKENS,
                    contract.TEMPERATURE,
                    contract.TOP_K,
                    contract.SEED,
                ),
                [
                    {
                        contract.PROMPT: np.array([self.tables.tokens[first].encode("utf-8")], dtype=object),
                        **sampling,
                    }
                ],
            ),
            Endpoint(
                contract.ENCODE,
                self.encode,
                _specs(width, contract.TEXT),
                [{contract.TEXT: np.array([b"a"], dtype=object)}],
            ),
            Endpoint(
                contract.DECODE, self.decode, _specs(width, contract.TOKENS), [{contract.TOKENS: tokens[:1]}]
            ),
        ]
