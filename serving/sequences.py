"""Server-side sequences: the recurrent `state` the server keeps between calls, per model.

A sequence (OpenVINO Model Server's word, its `sequence_id`) is one client's
conversation with a language model's `step` / `generate` signatures whose
packed `state` (1, S) stays on the server. The `SequenceStore` holds them:

- ids are unique per model name; a start with id 0 gets a fresh id;
- at most `max_sequences` live sequences per model (`--max_sequence_number`,
  OVMS's default 500); one more is UNAVAILABLE;
- a sequence idle (no call) for `idle_timeout` seconds is gone
  (`--sequence_idle_timeout_seconds`): a background reaper frees it, and a
  call that finds it expired answers NOT_FOUND even before the reaper runs;
- each sequence is pinned to the model version it started on; `pinned()`
  tells the model manager to keep that version loaded;
- every sequence has a lock its calls hold while they run, so calls on one
  sequence are serialized, never interleaved;
- the number of live sequences per model is the `live_sequences` gauge of
  `serving.metrics`.

A new sequence is first *reserved* (its id taken, counted against the
limit, its lock held by the starting call) and only *committed* once the
starting call succeeded; a failed start is *discarded*, leaving nothing.

Example:

>>> store = SequenceStore(max_sequences=500, idle_timeout=300.0)
>>> sequence = store.reserve("charlm", 0, version=1, state=np.zeros((1, 32), np.float32))
>>> store.commit(sequence, sequence.state)      # the starting call succeeded
>>> store.get("charlm", sequence.sequence_id).version
1
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import threading
import time

import numpy as np

from rnnserve.serving.errors import ServingError

log = logging.getLogger("rnnserve.serving")

DEFAULT_MAX_SEQUENCES = 500  # OVMS's max_sequence_number default
DEFAULT_IDLE_TIMEOUT_SECONDS = 300.0  # OVMS's sequence cleaner runs every 5 minutes
MAX_REAP_INTERVAL_SECONDS = 5.0  # the reaper looks at least this often


@dataclasses.dataclass(eq=False)
class Sequence:
    """One server-side sequence.

    Attributes:
        model: the model name it belongs to.
        sequence_id: its id (unique per model, never 0).
        version: the model version it is pinned to.
        state: the packed recurrent state after its last call, float32 (1, S).
        last_used: `time.monotonic()` of its last call's end.
        lock: held by the call running on it (serializes its calls).
        live: committed and not ended, expired or discarded.
    """

    model: str
    sequence_id: int
    version: int
    state: np.ndarray
    last_used: float
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    live: bool = False


class SequenceStore:
    """Every model's server-side sequences, their limits and their idle reaper.

    Args:
        max_sequences: live (and starting) sequences allowed per model.
        idle_timeout: seconds without a call after which a sequence is gone
            (0 = never).
        metrics: a `serving.metrics.Metrics` whose `live_sequences` gauge is
            kept up to date, or None.
        clock: the time source (seconds, monotonic).
    """

    def __init__(
        self,
        max_sequences: int = DEFAULT_MAX_SEQUENCES,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT_SECONDS,
        metrics=None,
        clock=time.monotonic,
    ):
        if max_sequences < 1:
            raise ValueError(f"Received an invalid value for argument `max_sequences`: {max_sequences}.")
        self.max_sequences = max_sequences
        self.idle_timeout = idle_timeout
        self._metrics = metrics
        self._clock = clock
        self._lock = threading.Lock()  # guards _sequences
        self._sequences: dict[str, dict[int, Sequence]] = {}
        self._next_id = itertools.count(1)
        self._stop = threading.Event()
        self._reaper: threading.Thread | None = None

    # -- lifecycle of one sequence ------------------------------------
    def reserve(self, model: str, sequence_id: int, version: int, state: np.ndarray) -> Sequence:
        """Takes an id for a new sequence (0 = a fresh one); returns it with its lock held.

        Raises:
            ServingError: ALREADY_EXISTS (the id is in use), UNAVAILABLE (the
                model has `max_sequences` sequences).
        """
        self._expire(model)
        with self._lock:
            sequences = self._sequences.setdefault(model, {})
            if sequence_id and sequence_id in sequences:
                raise ServingError(
                    "ALREADY_EXISTS",
                    f"Sequence with provided ID already exists: {sequence_id} (model {model}).",
                )
            if len(sequences) >= self.max_sequences:
                raise ServingError(
                    "UNAVAILABLE",
                    f"Max sequence number has been reached. Could not create new sequence: model {model} "
                    f"has {self.max_sequences} (--max_sequence_number); end one first.",
                )
            while not sequence_id or sequence_id in sequences:
                sequence_id = next(self._next_id)
            sequence = Sequence(model, sequence_id, version, state, self._clock())
            sequence.lock.acquire()
            sequences[sequence_id] = sequence
            return sequence

    def commit(self, sequence: Sequence, state: np.ndarray) -> None:
        """Stores a call's new state (a reserved sequence becomes live); releases nothing."""
        sequence.state, sequence.last_used = state, self._clock()
        if not sequence.live:
            sequence.live = True
            self._changed(sequence.model)

    def discard(self, sequence: Sequence) -> None:
        """Forgets a reserved sequence whose starting call failed, and releases its lock."""
        self._remove(sequence)
        sequence.lock.release()

    def end(self, sequence: Sequence) -> None:
        """Removes a sequence after its last call (the caller still holds its lock)."""
        self._remove(sequence)

    def get(self, model: str, sequence_id: int) -> Sequence:
        """The live sequence `sequence_id` of `model`.

        Raises:
            ServingError: NOT_FOUND for an unknown, ended or expired id.
        """
        self._expire(model)
        with self._lock:
            sequence = self._sequences.get(model, {}).get(sequence_id)
        if sequence is None:
            raise self.not_found(model, sequence_id)
        return sequence

    @staticmethod
    def not_found(model: str, sequence_id: int) -> ServingError:
        """NOT_FOUND for a sequence id that is not (or no longer) live."""
        return ServingError(
            "NOT_FOUND",
            f"Sequence with provided ID does not exist: {sequence_id} (model {model}); it ended, "
            "expired (--sequence_idle_timeout_seconds) or never started.",
        )

    def _remove(self, sequence: Sequence) -> None:
        with self._lock:
            sequences = self._sequences.get(sequence.model, {})
            if sequences.get(sequence.sequence_id) is sequence:
                del sequences[sequence.sequence_id]
        was_live, sequence.live = sequence.live, False
        if was_live:
            self._changed(sequence.model)

    # -- what other parts of the server ask -----------------------------
    def count(self, model: str) -> int:
        """Live sequences of `model`."""
        with self._lock:
            return sum(sequence.live for sequence in self._sequences.get(model, {}).values())

    def pinned(self, model: str, version: int) -> bool:
        """Whether a sequence (live or starting) runs on this version, which must stay loaded."""
        with self._lock:
            return any(sequence.version == version for sequence in self._sequences.get(model, {}).values())

    def _changed(self, model: str) -> None:
        if self._metrics is not None:
            self._metrics.live_sequences.labels(model_name=model).set(self.count(model))

    # -- idle sequences -------------------------------------------------
    def _expire(self, model: str) -> None:
        with self._lock:
            expired = self._expire_locked(model)
        if expired:
            self._changed(model)

    def _expire_locked(self, model: str) -> list[Sequence]:
        """Removes `model`'s idle sequences that no call holds; returns them (self._lock held)."""
        if self.idle_timeout <= 0:
            return []
        deadline = self._clock() - self.idle_timeout
        sequences = self._sequences.get(model, {})
        expired = []
        for sequence in list(sequences.values()):
            if sequence.live and sequence.last_used < deadline and sequence.lock.acquire(blocking=False):
                try:
                    del sequences[sequence.sequence_id]
                    sequence.live = False
                    expired.append(sequence)
                finally:
                    sequence.lock.release()
        return expired

    def reap(self) -> int:
        """Removes every model's idle sequences now; returns how many went."""
        with self._lock:
            expired = [sequence for model in list(self._sequences) for sequence in self._expire_locked(model)]
        for model in {sequence.model for sequence in expired}:
            self._changed(model)
        for sequence in expired:
            log.info("Sequence %d of model %s expired (idle)", sequence.sequence_id, sequence.model)
        return len(expired)

    def start(self) -> None:
        """Starts the background reaper (nothing to do when sequences never expire)."""
        if self.idle_timeout <= 0 or self._reaper is not None:
            return
        every = min(MAX_REAP_INTERVAL_SECONDS, self.idle_timeout / 4)

        def loop():
            while not self._stop.wait(every):
                self.reap()

        self._reaper = threading.Thread(target=loop, name="rnnserve-sequence-reaper", daemon=True)
        self._reaper.start()

    def stop(self) -> None:
        """Stops the reaper."""
        self._stop.set()
        if self._reaper is not None:
            self._reaper.join()
