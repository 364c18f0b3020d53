"""The decoder: continuous batching of every generation running on one model version.

One `Decoder` per server. Each loaded version that has work gets a *lane*
(a thread of its own, so one version's work never waits for another's).
A lane repeats one decode step:

    new rows:  consume each prompt with `step` (rows of equal length T share a call)
    every row: sample its next token                    one `rnnserve.sampling.pick_rows` call
    rows that go on: feed that token with `step`        one (B, 1) call for all of them

A row is one stream (or one batched one-token `generate` call). It joins at
the step after it arrives and leaves as soon as it ends (its length, a stop
string) or is cancelled, without waiting for the others; a cancelled row is
dropped before the next `step` call, so the server stops working for it at
once. Each row keeps its own temperature, top_k, seed and token number, so
its tokens are the ones `generate` gives it alone.

With `--enable_batching`, `serving.unary_batching.UnaryBatcher` sends
one-token `generate` calls through the lanes too (`generate_one`: at most
the batching parameters' `max_batch_size` of them per step, waiting up to
`batch_timeout_micros` for company).

Example:

```python
decoder = Decoder(metrics)
tokens, state = decoder.generate_one(servable, tokens=np.array([[5]], np.int32), state=zeros, temperature=0.0,
                                     top_k=0, seed=0)
tokens.shape, state.shape
# ((1, 1), (1, 32))
```
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
import weakref
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2

from rnnserve import contract, sampling
from rnnserve.serving.decoding import (
    FINISH_CANCELLED,
    FINISH_LENGTH,
    FINISH_STOP,
    ModelFacts,
    Piece,
    StopText,
    StreamEnd,
)
from rnnserve.serving.errors import ServingError

LINGER_SECONDS = 2.0  # an idle lane's thread waits this long for more work before it exits
FINISH_ERROR = "error"  # the streams_total label of a stream that failed midway


class _Sampler:
    """`sampling.pick_rows` in a graph of its own, run through a session callable.

    The same ops as the eager function, at a fraction of an eager call's
    overhead per step (the cost that matters at a few rows).
    """

    def __init__(self, masked_ids: tuple[int, ...]):
        self._graph = tf.Graph()
        with self._graph.as_default():
            inputs = [
                tf.compat.v1.placeholder(tf.float32, (None, None)),  # logits (B, V)
                tf.compat.v1.placeholder(tf.float32, (None,)),  # temperature
                tf.compat.v1.placeholder(tf.int32, (None,)),  # top_k
                tf.compat.v1.placeholder(tf.int64, (None,)),  # seed
                tf.compat.v1.placeholder(tf.int32, (None,)),  # position
            ]
            picked = sampling.pick_rows(*inputs, masked_ids=masked_ids)  # (B,)
        self._session = tf.compat.v1.Session(graph=self._graph)
        options = config_pb2.CallableOptions(feed=[x.name for x in inputs], fetch=[picked.name])
        self._run = self._session._make_callable_from_options(options)

    def __call__(self, logits, temperature, top_k, seed, position) -> np.ndarray:
        return self._run(logits, temperature, top_k, seed, position)[0]


@dataclasses.dataclass(eq=False)
class _Row:
    """One generation in a lane.

    `on_token(token) -> bool` hands a sampled token out (True: a stop string
    appeared); `on_end(reason, state, error)` ends it, with the state (1, S)
    after every sampled token but the last (None when none was sampled).
    """

    prompt: np.ndarray  # (T,) int32, consumed at the row's first step
    state: np.ndarray  # (1, S) float32
    temperature: float
    top_k: int
    seed: int
    max_new_tokens: int
    on_token: object
    on_end: object
    cancelled: object  # () -> bool
    unary: tuple | None = None  # (max_batch_size, timeout seconds) of a batched unary call
    arrived: float = dataclasses.field(default_factory=time.monotonic)
    logits: np.ndarray | None = None  # (V,) after the last consumed token
    generated: list = dataclasses.field(default_factory=list)
    ended: bool = False


class _Lane:
    def __init__(self, servable):
        self.servable = servable
        self.pending: collections.deque[_Row] = collections.deque()
        self.active: list[_Row] = []
        self.live = 0  # rows submitted and not ended (also while a step holds them)


class Decoder:
    """Decodes every stream and batched one-token `generate` call of the server.

    Args:
        metrics: the server's `Metrics` (tokens, streams, batch sizes).
    """

    def __init__(self, metrics):
        self._metrics = metrics
        self._lock = threading.Condition()  # guards _lanes and every lane's pending / active lists
        self._lanes: dict[int, _Lane] = {}
        self._facts: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._samplers: dict[tuple, _Sampler] = {}  # by masked ids, built at a first decode step
        self._closed = False

    def facts(self, servable) -> ModelFacts:
        """The version's `ModelFacts`, read once per loaded version."""
        with self._lock:
            facts = self._facts.get(servable)
            if facts is None:
                facts = self._facts[servable] = ModelFacts(servable)
            return facts

    def close(self, timeout: float = 10.0) -> None:
        """Ends every generation as cancelled (the server is stopping) and waits for the lanes to let go."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()
            self._lock.wait_for(lambda: all(lane.live == 0 for lane in self._lanes.values()), timeout)

    def sampler(self, masked_ids: tuple[int, ...]) -> _Sampler:
        """The shared sampler of models that never pick `masked_ids` (`ModelFacts.masked_ids`):
        `sampling.pick_rows` as a function of numpy arrays, (B,) int32 out."""
        with self._lock:
            if masked_ids not in self._samplers:
                self._samplers[masked_ids] = _Sampler(masked_ids)
            return self._samplers[masked_ids]

    def pinned(self, name: str, version: int) -> bool:
        """Whether a generation runs on this version (it must stay loaded)."""
        with self._lock:
            return any(
                lane.servable.name == name and lane.servable.version == version and lane.live > 0
                for lane in self._lanes.values()
            )

    # -- submitting --------------------------------------------------------
    def stream(self, servable, stream, prompt, state, temperature, top_k, seed, max_new_tokens, stop) -> None:
        """Starts decoding `stream` (a `decoding.Stream`) from `prompt` (T,) and `state` (1, S)."""
        pieces, separator = self.facts(servable).pieces()
        text = StopText(stop)
        name = servable.name
        self._metrics.active_streams.labels(model_name=name).inc()

        def on_token(token: int) -> bool:
            piece = pieces[token] if len(row.generated) == 1 else separator + pieces[token]
            out, stopped = text.add(piece)
            if not stopped and len(row.generated) == max_new_tokens:
                out += text.flush()
            stream.put(Piece(out, [token]))
            return stopped

        def on_end(reason, kept, error) -> None:
            self._metrics.active_streams.labels(model_name=name).dec()
            self._metrics.streams.labels(model_name=name, finish_reason=reason).inc()
            end = None
            if error is None:
                keeps_state = stream.sequence_id == 0
                end = StreamEnd(
                    finish_reason=reason,
                    generated_tokens=len(row.generated),
                    state=(kept if kept is not None else state)[0].copy() if keeps_state else None,
                    last_token=row.generated[-1] if row.generated else 0,
                    sequence_id=stream.sequence_id,
                    model_name=name,
                    version=servable.version,
                )
            stream.finish(end, kept, error)

        row = _Row(
            prompt,
            state,
            temperature,
            top_k,
            seed,
            max_new_tokens,
            on_token,
            on_end,
            lambda: stream.cancelled,
        )
        self._submit(servable, row)

    def generate_one(
        self, servable, tokens, state, temperature, top_k, seed, batching=(1, 0.0), timeout_ms=0
    ):
        """One-token `generate` of one row, decoded with whatever else runs on the version.

        Args:
            servable: the version.
            tokens: `(1, T)` int32, T ≥ 1, ids in [0, V).
            state: `(1, S)` float32.
            temperature, top_k, seed: `generate`'s scalars (checked).
            batching: (max_batch_size, batch_timeout seconds) for such calls.
            timeout_ms: the call's deadline (0 = none).

        Returns:
            (`tokens (1, 1)` int32, `state (1, S)`: after `tokens`), as `generate` with max_new_tokens 1.
        """
        done: Future = Future()
        cancelled = threading.Event()

        def on_end(reason, kept, error):
            if error is None and reason == FINISH_CANCELLED:  # timed out (nobody waits), or the server stops
                error = ServingError("UNAVAILABLE", "The server is shutting down; send the call again later.")
            if error is not None:
                done.set_exception(error)
            else:
                done.set_result((np.array([[row.generated[0]]], np.int32), kept))

        row = _Row(
            tokens[0],
            state,
            temperature,
            top_k,
            seed,
            1,
            lambda token: False,
            on_end,
            cancelled.is_set,
            batching,
        )
        self._submit(servable, row)
        try:
            return done.result(timeout=timeout_ms / 1000 if timeout_ms > 0 else None)
        except FutureTimeout:
            cancelled.set()
            raise ServingError("DEADLINE_EXCEEDED", "Timed out waiting for the batch to run.") from None

    def _submit(self, servable, row: _Row) -> None:
        with self._lock:
            lane = self._lanes.get(id(servable))
            if lane is None or lane.servable is not servable:
                lane = self._lanes[id(servable)] = _Lane(servable)
                name = f"rnnserve-decode-{servable.name}-{servable.version}"
                threading.Thread(target=self._run_lane, args=(lane,), name=name, daemon=True).start()
            lane.pending.append(row)
            lane.live += 1
            self._lock.notify_all()

    # -- the lane's loop -----------------------------------------------------
    def _take(self, lane: _Lane):
        """Waits for work; returns the rows that join now, or None when the lane is done."""
        with self._lock:
            idle_since = time.monotonic()
            while True:
                now = time.monotonic()
                if lane.pending:
                    oldest = lane.pending[0]
                    if oldest.unary and not lane.active and all(row.unary for row in lane.pending):
                        most, timeout = oldest.unary
                        due = oldest.arrived + timeout
                        if len(lane.pending) < most and now < due:
                            self._lock.wait(due - now)
                            continue
                    return self._pop(lane)
                if lane.active:
                    return []
                if now - idle_since >= LINGER_SECONDS:
                    if self._lanes.get(id(lane.servable)) is lane:
                        del self._lanes[id(lane.servable)]
                    return None
                self._lock.wait(LINGER_SECONDS - (now - idle_since))

    @staticmethod
    def _pop(lane: _Lane) -> list[_Row]:
        """The pending rows that join: every stream, and up to max_batch_size unary calls."""
        taken, kept, unary = [], collections.deque(), 0
        for row in lane.pending:
            if row.unary and unary >= row.unary[0]:
                kept.append(row)
                continue
            unary += bool(row.unary)
            taken.append(row)
        lane.pending = kept
        return taken

    def _run_lane(self, lane: _Lane) -> None:
        while True:
            new = self._take(lane)
            if new is None:
                return
            try:
                self._step(lane, new)
            except Exception as error:  # a bug must not strand the lane's rows
                failure = error if isinstance(error, ServingError) else ServingError("INTERNAL", str(error))
                for row in lane.active + new:
                    self._end(lane, row, FINISH_ERROR, failure)
                with self._lock:
                    lane.active = []

    def _step(self, lane: _Lane, new: list[_Row]) -> None:
        """One decode step of every row of the lane (module docstring)."""
        new = self._alive(lane, new)
        active = self._alive(lane, lane.active)
        by_length = collections.defaultdict(list)
        for row in new:
            by_length[len(row.prompt)].append(row)
        for rows in by_length.values():
            active += self._feed(lane, rows, np.stack([row.prompt for row in rows]))
        if not active:
            with self._lock:
                lane.active = []
            return
        tokens = self.sampler(self.facts(lane.servable).masked_ids)(
            np.stack([row.logits for row in active]),  # (B, V)
            np.array([row.temperature for row in active], np.float32),
            np.array([row.top_k for row in active], np.int32),
            np.array([row.seed for row in active], np.int64),
            np.array([len(row.generated) for row in active], np.int32),
        )  # (B,)
        self._metrics.decode_batch_size.observe(len(active))
        self._metrics.generated_tokens.labels(model_name=lane.servable.name).inc(len(active))
        going_on = []
        for row, token in zip(active, tokens.tolist()):
            row.generated.append(token)
            if row.on_token(token):
                self._end(lane, row, FINISH_STOP)
            elif len(row.generated) == row.max_new_tokens:
                self._end(lane, row, FINISH_LENGTH)
            else:
                going_on.append(row)
        going_on = self._alive(lane, going_on)
        if going_on:
            going_on = self._feed(lane, going_on, tokens_of(going_on))
        with self._lock:
            lane.active = going_on

    def _alive(self, lane: _Lane, rows: list[_Row]) -> list[_Row]:
        """The rows not cancelled (the cancelled ones end here, before any more work)."""
        alive = []
        for row in rows:
            if row.cancelled() or self._closed:
                self._end(lane, row, FINISH_CANCELLED)
            else:
                alive.append(row)
        return alive

    def _feed(self, lane: _Lane, rows: list[_Row], tokens: np.ndarray) -> list[_Row]:
        """Runs `step` on tokens (B, T) from the rows' states; returns the rows it advanced."""
        states = np.concatenate([row.state for row in rows])  # (B, S)
        try:
            outputs = lane.servable.run(
                contract.STEP,
                {contract.TOKENS: tokens, contract.STATE: states},
                [contract.LOGITS, contract.STATE],
            )
        except ServingError as error:
            for row in rows:
                self._end(lane, row, FINISH_ERROR, error)
            return []
        logits, states = outputs[contract.LOGITS][:, -1], outputs[contract.STATE]  # (B, V), (B, S)
        for b, row in enumerate(rows):
            row.logits, row.state = logits[b], states[b : b + 1]
        return rows

    def _end(self, lane: _Lane, row: _Row, reason: str, error: ServingError | None = None) -> None:
        if row.ended:
            return
        row.ended = True
        try:
            row.on_end(reason, row.state if row.generated else None, error)
        finally:
            with self._lock:
                lane.live -= 1
                self._lock.notify_all()


def tokens_of(rows) -> np.ndarray:
    """Each row's last sampled token, as the next `step` input (B, 1) int32."""
    return np.array([[row.generated[-1]] for row in rows], np.int32)
