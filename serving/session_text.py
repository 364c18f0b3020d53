"""A session's text, piece by piece: the calls it is cut into, and stop strings.

`Session.stream_text` cuts a generation into calls of at most `chunk_size`
tokens (`chunk_sizes`), each a streamed call or a `generate` call, and
passes their text through `StopText`: generation ends when the text
contains one of the stop strings, and the text yielded ends just before the
first one (the stop string itself is never yielded). Text that ends with
the beginning of a stop string is held back until the next pieces tell
whether the stop string follows, also across calls.

Example:

>>> stop = StopText(["\\n\\n"])
>>> stop.feed("one\\n"), stop.feed("two\\n"), stop.feed("\\nthree"), stop.stopped
('one', '\\ntwo', '', True)
>>> list(chunk_sizes(40, 16))
[16, 16, 8]
"""

from __future__ import annotations

import numpy as np

from rnnserve import contract


def chunk_sizes(max_new_tokens: int, chunk_size: int):
    """Yields the token counts of the calls that generate `max_new_tokens` tokens, `chunk_size` at most each."""
    if chunk_size < 1:
        raise ValueError(
            f"Received an invalid value for argument `chunk_size`. Expected >= 1, got {chunk_size}."
        )
    remaining = max_new_tokens
    while remaining > 0:
        yield min(chunk_size, remaining)
        remaining -= chunk_size


class StopText:
    """Scans text piece by piece for the first of some stop strings.

    Args:
        stops: the stop strings (none = the text never stops); each non-empty.
    """

    def __init__(self, stops=()):
        self.stops = tuple(stops)
        for stop in self.stops:
            if not isinstance(stop, str) or not stop:
                raise ValueError(f"Expected non-empty stop strings, got {stop!r}.")
        self.stopped = False
        self._held = ""

    def feed(self, piece: str) -> str:
        """The text that is now safe to show (after a stop: nothing more, ever)."""
        if self.stopped:
            return ""
        text = self._held + piece
        found = [index for index in (text.find(stop) for stop in self.stops) if index >= 0]
        if found:
            self.stopped, self._held = True, ""
            return text[: min(found)]
        keep = max((_begins(text, stop) for stop in self.stops), default=0)
        self._held = text[len(text) - keep :]
        return text[: len(text) - keep]

    def flush(self) -> str:
        """The text held back at the end of generation (it did not become a stop string)."""
        held, self._held = self._held, ""
        return held


def _begins(text: str, stop: str) -> int:
    """The length of the longest end of `text` that begins `stop` (shorter than `stop`)."""
    for length in range(min(len(stop) - 1, len(text)), 0, -1):
        if stop.startswith(text[-length:]):
            return length
    return 0


def stream_text(session, max_new_tokens: int, chunk_size: int, stop, streaming: bool, sampling: dict):
    """`Session.stream_text`'s generator: each call's text through one `StopText`."""
    if session.batch_size != 1:
        raise ValueError(f"stream_text generates one sequence; this session has {session.batch_size}.")
    if session.pending.shape[1] == 0:
        raise ValueError("Nothing to continue from: feed a prompt (at least one token) first.")
    scanner = StopText(stop)
    for count in chunk_sizes(max_new_tokens, chunk_size):
        if streaming:
            pieces = _streamed(session, count, scanner.stops, **sampling)
        else:
            pieces = _generated(session, count, sampling)
        try:
            server_stopped = yield from _shown(pieces, scanner)
        finally:
            pieces.close()  # a stream left early (the caller stopped, Ctrl-C) is cancelled
        if scanner.stopped or server_stopped:
            break
    tail = scanner.flush()
    if tail:
        yield tail


def _generated(session, count: int, sampling: dict):
    """Yields the text of one `generate` call of `count` tokens; returns False (it knows no stop strings)."""
    yield session.decode(session.generate(count, **sampling))[0]
    return False


def _shown(pieces, scanner: StopText):
    """Yields what `scanner` lets through of one call's pieces (all of them are read); returns the call's result."""
    while True:
        try:
            piece = next(pieces)
        except StopIteration as end:
            return bool(end.value)
        shown = scanner.feed(piece)
        if shown:
            yield shown


def _streamed(session, count: int, stop, temperature: float = 1.0, top_k: int = 0, seed: int | None = None):
    """Yields the text of one streamed call of `count` tokens, then moves `session`; returns whether a stop string ended it."""
    state, sequence_id, control = session._next_call()
    stream = session.client.generate_stream(
        session.model,
        tokens=session.pending[0].tolist(),
        state=None if state is None else state[0],
        max_new_tokens=count,
        temperature=temperature,
        top_k=top_k,
        seed=session._call_seed(seed),
        stop=tuple(stop),
        sequence_id=sequence_id,
        sequence_control=contract.SEQUENCE_CONTINUE if control is None else control,
        version=session.version,
    )
    sampled = []
    try:
        with stream:
            for piece in stream:
                sampled.extend(piece.token_ids)
                yield piece.text
    finally:
        end = stream.end
        if end is not None and end.generated_tokens:
            state = None if end.state is None else np.asarray(end.state, np.float32)[None, :]  # (1, S)
            tokens = np.array([sampled[: end.generated_tokens - 1] + [end.last_token]], np.int32)
            session._moved(tokens, state, int(end.sequence_id))
        elif end is None and sampled and control == contract.SEQUENCE_CONTINUE:
            session._sequence.lost = (
                True  # stopped midway: ended by the next call, which starts anew from `fed`
            )
    return end is not None and end.finish_reason == "stop"
