"""Streaming generation: a language model's tokens and text, handed out as they are sampled.

`ServerCore.generate_stream` checks a request (`StreamParams`) and returns a
`Stream`; the server's `Decoder` (`serving.decode_lanes`) produces it. For
each sampled token the stream yields a `Piece` (the token's text, from the
model's own `decode` signature, and its id), then ends with a `StreamEnd`
(why it ended, how many tokens, the state to continue from).

Tokens are drawn exactly as the export's `generate` draws them for a batch
of one (`rnnserve.sampling`): token number i with the seed pair (seed, i),
so a stream gives the tokens of `generate` with the same prompt, state and
seed, whatever else the server decodes at the same time.

Stop strings end a stream as soon as its text contains one: the text sent
ends just before it, and text that could still turn into a stop string is
held back until it can no longer (it then comes with a later piece).

Example:

```python
params = StreamParams(prompt="the ", max_new_tokens=20, temperature=0.8, seed=7, stop=("\\n",))
with core.generate_stream(spec, params, entrypoint="GRPC") as stream:
    for piece in stream:
        print(piece.text, end="", flush=True)
stream.end.finish_reason, stream.end.generated_tokens
# ('stop', 12)
```
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import queue
import threading
from collections.abc import Iterator

import numpy as np

from rnnserve import contract
from rnnserve.serving.errors import ServingError

DEFAULT_MAX_NEW_TOKENS_LIMIT = 1024  # for an export whose rnnserve.json does not say
MAX_STOP_STRINGS = 16
MAX_STOP_LENGTH = 256  # characters
INT64 = (-(2**63), 2**63 - 1)
FINISH_LENGTH, FINISH_STOP, FINISH_CANCELLED = "length", "stop", "cancelled"
STREAM_SIGNATURES = (contract.STEP, contract.ENCODE, contract.DECODE)


@dataclasses.dataclass
class StreamParams:
    """What a streaming generation asks for.

    Args:
        prompt: text, encoded by the model's `encode` signature; or
        tokens: token ids (exactly one of the two, at least one token).
        state: `(S,)` float32 state to start from (None = zeros, or the sequence's).
        max_new_tokens: tokens to sample, 1 .. the model's `max_new_tokens_limit`. Default: 16.
        temperature: 0 = greedy. Default: 1.0.
        top_k: sample among the k likeliest tokens (0 = all). Default: 0.
        seed: int64; token number i is drawn with the seed pair (seed, i). Default: 0.
        stop: stop strings (at most 16, each 1..256 characters). Default: none.
        sequence_id: a server-side sequence (0 = none, or let a start pick one).
        sequence_control: `contract.SEQUENCE_CONTINUE` / `START` / `END` / `FORK`.
    """

    prompt: str | None = None
    tokens: list[int] | None = None
    state: np.ndarray | None = None
    max_new_tokens: int = 16
    temperature: float = 1.0
    top_k: int = 0
    seed: int = 0
    stop: tuple[str, ...] = ()
    sequence_id: int = 0
    sequence_control: int = 0


@dataclasses.dataclass
class Piece:
    """One sampled token: its id and its text ("" while text is held back for a stop string)."""

    text: str
    token_ids: list[int]


@dataclasses.dataclass
class StreamEnd:
    """How a stream ended.

    Attributes:
        finish_reason: "length", "stop" or "cancelled".
        generated_tokens: tokens sampled (with the one that completed a stop string).
        state: `(S,)` float32 after every sampled token but the last (as `generate`
            answers), so the next call starts with `last_token`; None on a
            server-side sequence (the server keeps it).
        last_token: the last sampled token (0 when none was).
        sequence_id: the sequence's id (the new one for a start or fork), 0 without one.
        model_name, version: the answering model version.
    """

    finish_reason: str
    generated_tokens: int
    state: np.ndarray | None
    last_token: int
    sequence_id: int
    model_name: str
    version: int


def invalid(message: str) -> ServingError:
    """INVALID_ARGUMENT with a one-sentence message."""
    return ServingError("INVALID_ARGUMENT", message)


class ModelFacts:
    """What the decoder needs to know of one language-model version, read once.

    Attributes:
        vocab_size: V (the `step` signature's logits width).
        state_size: S (its `state` width).
        limit: the largest `max_new_tokens` (rnnserve.json's `max_new_tokens_limit`).
        masked_ids: the ids never sampled: rnnserve.json's `unk_id` (default 0)
            and its `padding_id` when the vocabulary has one.
        draws_as_generate: whether its `generate` follows the sampling rule (None = not checked yet).
    """

    def __init__(self, servable):
        step = servable.signatures.get(contract.STEP)
        if step is None or contract.STATE not in step.inputs or contract.LOGITS not in step.outputs:
            raise not_a_language_model(servable)
        self.vocab_size = step.outputs[contract.LOGITS].tensor_shape.dim[-1].size
        self.state_size = step.inputs[contract.STATE].tensor_shape.dim[-1].size
        if self.vocab_size < 1 or self.state_size < 1:
            raise not_a_language_model(servable)
        metadata = _metadata(servable)
        limit = metadata.get(contract.MAX_NEW_TOKENS_LIMIT)
        self.limit = limit if _is_id(limit) and limit >= 1 else DEFAULT_MAX_NEW_TOKENS_LIMIT
        unk, padding = metadata.get(contract.UNK_ID), metadata.get(contract.PADDING_ID)
        unk = unk if _is_id(unk) and unk < self.vocab_size else contract.UNK_TOKEN_ID
        padded = _is_id(padding) and padding < self.vocab_size and padding != unk
        self.masked_ids = tuple(sorted({unk, padding} if padded else {unk}))
        self.draws_as_generate: bool | None = None  # see `unary_batching.draws_as_generate`
        self._servable = servable
        self._lock = threading.Lock()
        self._pieces: list[str] | None = None
        self._separator = ""

    def pieces(self) -> tuple[list[str], str]:
        """Every id's text and what `decode` puts between two tokens (one `decode` call of all V ids)."""
        with self._lock:
            if self._pieces is None:
                ids = np.arange(self.vocab_size, dtype=np.int32)
                self._pieces = self._decode(ids[:, np.newaxis])  # (V, 1): one text per id
                one = min(1, self.vocab_size - 1)
                pair = self._decode(np.array([[one, one]], np.int32))[0]
                single = self._pieces[one]
                self._separator = pair[len(single) : len(pair) - len(single)]
            return self._pieces, self._separator

    def _decode(self, tokens: np.ndarray) -> list[str]:
        texts = self._servable.run(contract.DECODE, {contract.TOKENS: tokens}, [contract.TEXT])[contract.TEXT]
        return [text.decode("utf-8", errors="replace") for text in texts]


def _is_id(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _metadata(servable) -> dict:
    """The version's rnnserve.json ({} when it has none or it cannot be read)."""
    try:
        with open(os.path.join(servable.path, contract.METADATA_FILE), encoding="utf-8") as handle:
            facts = json.load(handle)
    except (OSError, ValueError):
        return {}
    return facts if isinstance(facts, dict) else {}


def not_a_language_model(servable) -> ServingError:
    """FAILED_PRECONDITION for a model without the signatures streaming needs."""
    return ServingError(
        "FAILED_PRECONDITION",
        f"Model {servable.name} version {servable.version} is not a language model: streaming needs its "
        f'"step", "encode" and "decode" signatures.',
    )


def check_integer(value, name: str, low: int, high: int) -> int:
    """`value` as an int, INVALID_ARGUMENT unless it is an integer in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise invalid(f"Received an invalid `{name}`: expected an integer in [{low}, {high}], got {value!r}.")
    return int(value)


def check_params(params: StreamParams, facts: ModelFacts) -> tuple[float, int, int, int, tuple[str, ...]]:
    """Checks a request's sampling fields; returns (temperature, top_k, seed, max_new_tokens, stop)."""
    max_new_tokens = check_integer(params.max_new_tokens, "max_new_tokens", 1, facts.limit)
    top_k = check_integer(params.top_k, "top_k", 0, facts.vocab_size)
    seed = check_integer(params.seed, "seed", *INT64)
    try:
        temperature = float(params.temperature)
    except (TypeError, ValueError):
        temperature = math.nan
    if not (math.isfinite(temperature) and temperature >= 0):
        raise invalid(
            f"Received an invalid `temperature`: expected a number >= 0, got {params.temperature!r}."
        )
    stop = tuple(params.stop or ())
    if len(stop) > MAX_STOP_STRINGS:
        raise invalid(f"Received {len(stop)} stop strings; at most {MAX_STOP_STRINGS} are allowed.")
    for text in stop:
        if not isinstance(text, str) or not 1 <= len(text) <= MAX_STOP_LENGTH:
            raise invalid(
                f"Received an invalid stop string {text!r}: expected 1 to {MAX_STOP_LENGTH} characters."
            )
    return temperature, top_k, seed, max_new_tokens, stop


def sends_state(params: StreamParams) -> bool:
    """Whether the request carries a state of its own (an empty one is none)."""
    return params.state is not None and np.size(params.state) > 0


def check_state(state, facts: ModelFacts) -> np.ndarray | None:
    """A client's `(S,)` state as float32 (1, S), or None (none sent, or an empty one)."""
    if state is None:
        return None
    array = np.asarray(state, np.float32)
    if array.size == 0:
        return None
    if array.shape != (facts.state_size,):
        raise invalid(
            f"Received an invalid `state`: expected shape ({facts.state_size},), got {tuple(array.shape)}."
        )
    return array[np.newaxis]


def prompt_tokens(params: StreamParams, servable, facts: ModelFacts) -> np.ndarray:
    """The prompt as `(T,)` int32 ids (the `encode` signature turns text into ids).

    An empty `prompt` or `tokens` beside a non-empty other counts as absent
    (a wire message cannot leave a field out).
    """
    prompt, tokens = params.prompt, params.tokens
    if prompt is not None and tokens is not None and (prompt == "") != (len(tokens) == 0):
        prompt, tokens = (None, tokens) if prompt == "" else (prompt, None)
    if (prompt is None) == (tokens is None):
        raise invalid("Send exactly one of `prompt` (text) and `tokens` (ids) to start the generation from.")
    if prompt is not None:
        if contract.ENCODE not in servable.signatures:
            raise not_a_language_model(servable)
        text = np.array([prompt.encode("utf-8")], dtype=object)
        outputs = servable.run(contract.ENCODE, {contract.TEXT: text}, [contract.TOKENS, contract.LENGTHS])
        tokens = outputs[contract.TOKENS][0, : int(outputs[contract.LENGTHS][0])]
    else:
        tokens = np.asarray(list(tokens), dtype=np.int64)
        if tokens.ndim != 1:
            raise invalid("Received an invalid `tokens`: expected a flat list of token ids.")
        if tokens.size and (tokens.min() < 0 or tokens.max() >= facts.vocab_size):
            raise invalid(
                f"Received an invalid `tokens`: every id must be in [0, {facts.vocab_size}), got "
                f"ids from {int(tokens.min())} to {int(tokens.max())}."
            )
    if tokens.size == 0:
        raise invalid("Received an empty prompt: the generation needs at least one token to start from.")
    return tokens.astype(np.int32)


class StopText:
    """A stream's text so far, and how much of it may be sent (stop strings held back).

    >>> text = StopText(("END",))
    >>> text.add("abE"), text.add("N"), text.add("Dx")
    (('ab', False), ('', False), ('', True))
    """

    def __init__(self, stops: tuple[str, ...]):
        self.stops, self.text, self.sent = stops, "", 0

    def add(self, piece: str) -> tuple[str, bool]:
        """Appends a token's text; returns (the text to send now, whether a stop string appeared)."""
        self.text += piece
        hits = [at for at in (self.text.find(stop, self.sent) for stop in self.stops) if at >= 0]
        if hits:
            return self._send(min(hits)), True
        held = max(
            (k for stop in self.stops for k in range(1, len(stop)) if self.text.endswith(stop[:k])), default=0
        )
        return self._send(max(self.sent, len(self.text) - held)), False

    def flush(self) -> str:
        """Everything not sent yet (the stream ended without a stop string)."""
        return self._send(len(self.text))

    def _send(self, until: int) -> str:
        out, self.sent = self.text[self.sent : until], until
        return out


_DONE = object()  # the queue's last item


class Stream:
    """A running streaming generation: iterate for `Piece`s; `end` is set once it ends.

    Made by `ServerCore.generate_stream`. Iteration blocks for the next
    piece, raises `ServingError` if the generation fails midway and stops
    after the last piece. `cancel()` (any thread, idempotent) stops the
    server's work before its next decode step; `close()` cancels an
    unfinished stream and waits until everything it held is released. Use
    it as a context manager.
    """

    def __init__(self, model_name: str, version: int, sequence_id: int = 0, on_finish=None):
        self.end: StreamEnd | None = None
        self.model_name, self.version, self.sequence_id = model_name, version, sequence_id
        self._items: queue.Queue = queue.Queue()
        self._cancelled = threading.Event()
        self._finished = threading.Event()
        self._on_finish = on_finish

    # -- the consumer's side ---------------------------------------------
    def __iter__(self) -> Iterator[Piece]:
        while True:
            item = self._items.get()
            if item is _DONE:
                self._items.put(_DONE)  # a second iteration ends at once
                return
            if isinstance(item, ServingError):
                self._items.put(_DONE)
                raise item
            yield item

    def coalesced(self) -> Iterator[Piece]:
        """The pieces as the wire sends them: one per token while the reader keeps up.

        Each blocks for the next piece, then merges into it every piece
        already waiting, so a reader that falls behind (a slow network, a
        busy machine) gets the tokens it missed in one message instead of
        paying a message's cost per token. The text and tokens are the same.
        """
        pieces = iter(self)
        for piece in pieces:
            texts, tokens = [piece.text], list(piece.token_ids)
            while True:
                try:
                    item = self._items.get_nowait()
                except queue.Empty:
                    break
                if not isinstance(item, Piece):
                    self._items.put(item)  # the end (or the error) comes after what was merged
                    break
                texts.append(item.text)
                tokens += item.token_ids
            yield Piece("".join(texts), tokens) if len(tokens) > len(piece.token_ids) else piece

    def cancel(self) -> None:
        """Asks the decoder to stop this stream before its next step."""
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        """Whether `cancel()` was called."""
        return self._cancelled.is_set()

    def close(self, timeout: float = 60.0) -> None:
        """Cancels the stream if it is unfinished and waits until the decoder let it go."""
        if not self._finished.is_set():
            self.cancel()
        self._finished.wait(timeout)

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the decoder's side ----------------------------------------------
    def put(self, piece: Piece) -> None:
        """Hands out one piece."""
        self._items.put(piece)

    def finish(self, end: StreamEnd | None, state, error: ServingError | None = None) -> None:
        """Ends the stream with `end` (or fails it with `error`); runs the release callback once.

        `state` is the `(1, S)` state to keep (after every sampled token but
        the last), or None when no token was sampled.
        """
        try:
            if self._on_finish is not None:
                self._on_finish(end, state, error)
        finally:
            self.end = end
            self._items.put(error if error is not None else _DONE)
            self._finished.set()
