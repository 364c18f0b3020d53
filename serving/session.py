"""`Session`: a text-generation sequence over `step` and `generate`, its state on the client or the server.

By default the server is stateless: the recurrent state of a sequence
travels with each call (the `state` input and output of the SavedModel
contract, docs/savedmodel.md), as with a real TF Serving. With
`server_state=True` the embedded server keeps it instead (its server-side
sequences: `sequence_id` and `sequence_control_input`, docs/serving.md) and
calls carry no state. Either way a sequence can be continued later,
`fork()`ed into independent continuations, saved with `snapshot()` /
`Session.restore()`, and its text streamed with `stream_text()`.

Invariant: the sequence's position is `state`, then the tokens `fed` to the
server since (server-side sequences only; always none with client-held
state), then the `pending` tokens (B, k), not fed yet. `generate` feeds
`pending` and samples N tokens in one call; the contract says its state
afterwards is the state after all returned tokens but the last, so
afterwards `pending` is exactly that last token. Hence continuing a
session equals one long `generate` (exactly, when greedy), in both modes.

With server-side state:

- the first call starts the sequence (with `state` when it is not zeros,
  e.g. restored from a snapshot), later ones continue it;
- `fork()` calls nothing: parent and fork share the server's sequence until
  one of them moves on, which forks it on the server then (control 3), so
  the other keeps the original;
- `snapshot()` and `next_logits()` recompute the state from `state` and
  `fed` with client-held `step` calls (the server never returns the state
  of a sequence it keeps), so snapshots restore in either mode;
- `close()` (or leaving `with Session(...)`) ends the sequence on the
  server; a session that is dropped without it is freed by the server's
  idle timeout (`--sequence_idle_timeout_seconds`). A closed session can go
  on: its next call starts a new sequence where it was.

A session pins the model version it started on (a hot reload must not mix
two models' states), and works with `PredictionClient` or `RestClient`.

Example:

```python
session = Session(PredictionClient("127.0.0.1:8500"), "charlm")
session.feed_text("The ")
session.generate_text(20, temperature=0.0)    # 20 characters
# 'quick brown fox jump'
other = session.fork()                          # same past, independent future
with Session(client, "charlm", server_state=True) as kept:
    kept.feed_text("The ")
    print("".join(kept.stream_text(100, stop=["\\n"])))
```

A fork samples with a seed stream of its own, derived from its parent's seed,
the parent's position and the number of forks it has taken (`fork_seed`), so
parent and fork draw different continuations, and running the same program
again draws the same ones. An explicit `seed=` reproduces exactly anywhere.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import io

import numpy as np

from rnnserve import contract
from rnnserve.serving import session_text
from rnnserve.serving.errors import ServingError

# Each generate call of a session samples with its own seed, derived from the
# session seed and the call count, so chunks are not copies of each other.
SEED_STRIDE = 1_000_003
SEED_RANGE = 2**63  # the contract's `seed` is an int64; seeds stay non-negative
REPLAY_CHUNK = 128  # tokens per `step` call when recomputing a server-side sequence's state


def fork_seed(seed: int, calls: int, forks: int) -> int:
    """The base seed of a fork: a hash of the parent's seed, its call count and its fork count.

    Different forks (of one session, or at different points of it) get
    unrelated seed streams; the same fork of the same history gets the same.

    Example:

    >>> fork_seed(0, 3, 0) != fork_seed(0, 3, 1)
    True
    """
    digest = hashlib.blake2b(f"rnnserve-fork:{seed}:{calls}:{forks}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % SEED_RANGE


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """Everything needed to resume a session: model, version, state, pending tokens, seed stream."""

    model: str
    version: int
    state: np.ndarray  # (B, S) float32
    pending: np.ndarray  # (B, k) int32
    seed: int
    calls: int
    forks: int = 0  # forks taken so far (the next fork's seed depends on it)

    def to_bytes(self) -> bytes:
        """Serializes the snapshot (a numpy .npz)."""
        buffer = io.BytesIO()
        np.savez(
            buffer,
            model=np.array(self.model),
            version=self.version,
            state=self.state,
            pending=self.pending,
            seed=self.seed,
            calls=self.calls,
            forks=self.forks,
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Snapshot:
        """The snapshot `to_bytes` wrote."""
        with np.load(io.BytesIO(data), allow_pickle=False) as fields:
            return cls(
                str(fields["model"]),
                int(fields["version"]),
                fields["state"].astype(np.float32),
                fields["pending"].astype(np.int32),
                int(fields["seed"]),
                int(fields["calls"]),
                int(fields["forks"]) if "forks" in fields else 0,
            )


class _ServerSequence:
    """A sequence the server keeps, shared by the sessions standing at its position (a fork and its parent)."""

    def __init__(self, sequence_id: int):
        self.sequence_id, self.sessions = sequence_id, 1
        self.lost = False  # a call on it failed midway: where it stands is unknown, so it is only ended


class Session:
    """One (batch of) sequence(s) generated by a served language model.

    Args:
        client: a `PredictionClient` or `RestClient`.
        model: the model name.
        batch_size: number of sequences generated side by side (default 1;
            1 with `server_state`: a server-side sequence is one row).
        version: pin this version (default: the latest, resolved now).
        seed: base sampling seed (default 0).
        server_state: keep the state on the server (the embedded server's
            server-side sequences) instead of sending it with every call
            (default False: works with any TF Serving).
    """

    def __init__(
        self,
        client,
        model: str,
        batch_size: int = 1,
        version: int | None = None,
        seed: int = 0,
        server_state: bool = False,
    ):
        if batch_size < 1 or (server_state and batch_size != 1):
            wanted = (
                "1 with server_state=True (a server-side sequence is one row)" if server_state else ">= 1"
            )
            raise ValueError(
                f"Received an invalid value for argument `batch_size`. Expected {wanted}, got {batch_size}."
            )
        self.client, self.model, self.server_state = client, model, server_state
        metadata = client.metadata(model, version=version)
        self.version = metadata.version
        if contract.GENERATE not in metadata.signatures:
            raise ServingError(
                "FAILED_PRECONDITION",
                f"model {model} version {self.version} has no 'generate' signature; is it a language model export?",
            )
        state_info = metadata.signatures[contract.GENERATE].inputs[contract.STATE]
        self.state_size = state_info.shape[-1]
        self.has_text = contract.ENCODE in metadata.signatures and contract.DECODE in metadata.signatures
        self.seed, self.calls, self.forks = seed, 0, 0
        self.state = np.zeros((batch_size, self.state_size), np.float32)  # (B, S)
        self.fed: list[np.ndarray] = []  # (B, k) each: fed to the server's sequence after `state`
        self.pending = np.zeros((batch_size, 0), np.int32)  # (B, k)
        self._sequence: _ServerSequence | None = None

    @property
    def batch_size(self) -> int:
        return self.state.shape[0]

    @property
    def sequence_id(self) -> int:
        """The id of the server-side sequence this session stands on (0: none yet, or client-held state)."""
        return self._sequence.sequence_id if self._sequence is not None else 0

    def _predict(self, signature: str, inputs: dict, output_filter=()) -> dict:
        return self.client.predict(
            self.model, inputs, signature_name=signature, output_filter=output_filter, version=self.version
        )

    # -- feeding ---------------------------------------------------------
    def feed(self, tokens) -> None:
        """Appends token ids (B, T) (or (T,) for batch 1) to the sequence; no server call yet."""
        tokens = np.asarray(tokens, np.int32)
        if tokens.ndim == 1:
            tokens = tokens[None, :]
        if tokens.ndim != 2 or tokens.shape[0] != self.batch_size:
            raise ValueError(f"Expected tokens of shape ({self.batch_size}, T), got {tokens.shape}.")
        self.pending = np.concatenate([self.pending, tokens], axis=1)

    def encode(self, texts) -> np.ndarray:
        """Token ids (B, T) of one text per sequence, through the model's `encode` signature."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        outputs = self._predict(
            contract.ENCODE, {contract.TEXT: np.array([t.encode("utf-8") for t in texts], dtype=object)}
        )
        lengths = outputs[contract.LENGTHS]
        if len(set(lengths.tolist())) > 1:
            raise ValueError(
                f"Texts encode to different lengths {lengths.tolist()}; feed them as separate sessions."
            )
        return outputs[contract.TOKENS][:, : int(lengths[0])]

    def decode(self, tokens) -> list[str]:
        """Text of token ids (B, N), through the model's `decode` signature."""
        outputs = self._predict(contract.DECODE, {contract.TOKENS: np.asarray(tokens, np.int32)})
        return [bytes(item).decode("utf-8", errors="replace") for item in outputs[contract.TEXT]]

    def feed_text(self, texts) -> None:
        """Encodes and feeds one text per sequence (a str for batch 1)."""
        tokens = self.encode(texts)
        self.feed(np.broadcast_to(tokens, (self.batch_size, tokens.shape[1])))

    # -- where the sequence's state is -------------------------------------
    def _settle(self) -> None:
        """Recomputes `state` through the tokens `fed` to the server since, with client-held `step` calls."""
        if not self.fed:
            return
        tokens, state = np.concatenate(self.fed, axis=1), self.state  # (B, k), (B, S)
        for start in range(0, tokens.shape[1], REPLAY_CHUNK):
            inputs = {contract.TOKENS: tokens[:, start : start + REPLAY_CHUNK], contract.STATE: state}
            state = self._predict(contract.STEP, inputs, output_filter=[contract.STATE])[contract.STATE]
        self.state, self.fed = state, []

    def _next_call(self) -> tuple[np.ndarray | None, int, int | None]:
        """(state to send or None, sequence_id, control or None) of the next call that feeds `pending`."""
        if not self.server_state:
            return self.state, 0, None
        if self._sequence is not None and self._sequence.lost:
            self.close()
        if self._sequence is None:  # start a sequence where this session stands
            self._settle()
            return (self.state if np.any(self.state) else None), 0, contract.SEQUENCE_START
        if self._sequence.sessions == 1:
            return None, self._sequence.sequence_id, contract.SEQUENCE_CONTINUE
        return None, self._sequence.sequence_id, contract.SEQUENCE_FORK  # the others keep the original

    def _call_inputs(self, inputs: dict) -> dict:
        """`inputs` plus the state or sequence controls of the next call that feeds `pending`."""
        state, sequence_id, control = self._next_call()
        if state is not None:
            inputs[contract.STATE] = state
        if control is not None:
            inputs[contract.SEQUENCE_ID] = np.array([sequence_id], np.uint64)
            inputs[contract.SEQUENCE_CONTROL_INPUT] = np.array([control], np.uint32)
        return inputs

    def _moved(self, sampled: np.ndarray, state: np.ndarray | None, sequence_id: int) -> None:
        """Records a call that fed `pending` and sampled `sampled` (B, N >= 1)."""
        if not self.server_state:
            self.state = state  # after all of `sampled` but the last
        else:
            self.fed.append(np.concatenate([self.pending, sampled[:, :-1]], axis=1))
            if self._sequence is None or self._sequence.sequence_id != sequence_id:  # started or forked
                if self._sequence is not None:
                    self._sequence.sessions -= 1
                self._sequence = _ServerSequence(sequence_id)
        self.pending = sampled[:, -1:].astype(np.int32)
        self.calls += 1

    def _call_seed(self, seed: int | None) -> int:
        return (self.seed + SEED_STRIDE * self.calls) % SEED_RANGE if seed is None else seed

    # -- stepping and generating -------------------------------------------
    def next_logits(self) -> np.ndarray:
        """Logits (B, V) of the next token; runs `step` without changing where the session stands."""
        if self.pending.shape[1] == 0:
            raise ValueError("Nothing to predict from: feed at least one token first.")
        self._settle()
        outputs = self._predict(
            contract.STEP, {contract.TOKENS: self.pending, contract.STATE: self.state}, [contract.LOGITS]
        )
        return outputs[contract.LOGITS][:, -1, :]

    def generate(
        self, max_new_tokens: int, temperature: float = 1.0, top_k: int = 0, seed: int | None = None
    ) -> np.ndarray:
        """Samples `max_new_tokens` tokens (B, N) in one `generate` call and continues the sequence.

        Args:
            max_new_tokens: N, at least 1 (the model caps it; see its rnnserve.json).
            temperature: 0 is greedy.
            top_k: keep the k most likely tokens (0 = all).
            seed: sampling seed for this call (default: derived from the session seed).
        """
        if self.pending.shape[1] == 0:
            raise ValueError("Nothing to continue from: feed a prompt (at least one token) first.")
        inputs = {
            contract.TOKENS: self.pending,
            contract.MAX_NEW_TOKENS: np.int32(max_new_tokens),
            contract.TEMPERATURE: np.float32(temperature),
            contract.TOP_K: np.int32(top_k),
            contract.SEED: np.int64(self._call_seed(seed)),
        }
        outputs = self._predict(contract.GENERATE, self._call_inputs(inputs))
        tokens = outputs[contract.TOKENS]  # (B, N)
        sequence_id = outputs[contract.SEQUENCE_ID][0] if contract.SEQUENCE_ID in outputs else 0
        self._moved(tokens, outputs.get(contract.STATE), int(sequence_id))
        return tokens

    def stream(self, max_new_tokens: int, chunk_size: int = 16, **sampling):
        """Yields token chunks (B, <= chunk_size) until `max_new_tokens` have been generated."""
        for count in session_text.chunk_sizes(max_new_tokens, chunk_size):
            yield self.generate(count, **sampling)

    def generate_text(self, max_new_tokens: int, chunk_size: int = 64, **sampling) -> str | list[str]:
        """Generates and decodes text (a str for batch 1, else one str per sequence)."""
        pieces = [self.decode(chunk) for chunk in self.stream(max_new_tokens, chunk_size, **sampling)]
        texts = ["".join(parts) for parts in zip(*pieces)] if pieces else [""] * self.batch_size
        return texts[0] if self.batch_size == 1 else texts

    def offers_streaming(self) -> bool:
        """Whether the client says its server streams generations (a real TF Serving does not)."""
        offers = getattr(self.client, "offers_streaming", None)
        return bool(offers is not None and offers())

    def stream_text(self, max_new_tokens: int, chunk_size: int = 16, stop=(), streaming=None, **sampling):
        """Yields the generated text piece by piece (batch 1), through the server's streaming API if offered.

        Both ways give the same text for the same seed: the generation is cut
        into calls of `chunk_size` tokens, each sampled with the seed of one
        `generate` call (see `stream`); a streamed call draws exactly what
        `generate` draws and sends its text token by token, the other way
        sends each chunk's text when its `generate` call returns. The text ends
        just before the first stop string (which is not yielded). After a
        stop, the session stands after the last token sampled: a stream ends
        at the token that completed the stop string, a `generate` call at the
        end of its chunk.

        Args:
            max_new_tokens: tokens to generate at most.
            chunk_size: tokens per call (the model caps one call).
            stop: stop strings.
            streaming: True / False to force a way (default: stream when
                `offers_streaming()`).
            **sampling: `temperature`, `top_k`, `seed` as for `generate`.
        """
        if streaming is None:
            streaming = self.offers_streaming()
        return session_text.stream_text(self, max_new_tokens, chunk_size, stop, streaming, sampling)

    # -- fork, snapshot, restore, close --------------------------------------
    def fork(self, seed: int | None = None) -> Session:
        """An independent copy: same past, its own future (and the same client).

        Args:
            seed: the fork's base seed (default: `fork_seed` of this session's
                seed stream and position, different for every fork taken).
        """
        if seed is None:
            seed = fork_seed(self.seed, self.calls, self.forks)
        self.forks += 1
        branch = copy.copy(self)
        branch.state, branch.pending, branch.fed = self.state.copy(), self.pending.copy(), list(self.fed)
        branch.seed, branch.calls, branch.forks = seed, 0, 0
        if self._sequence is not None:
            self._sequence.sessions += 1  # shared until one of the two moves on
        return branch

    def snapshot(self) -> Snapshot:
        """The session's current position, to resume later (also across processes and modes)."""
        self._settle()
        return Snapshot(
            self.model,
            self.version,
            self.state.copy(),
            self.pending.copy(),
            self.seed,
            self.calls,
            self.forks,
        )

    @classmethod
    def restore(cls, client, snapshot: Snapshot, server_state: bool = False) -> Session:
        """A session at `snapshot`'s position, on `client` (pinned to the snapshot's version)."""
        session = cls(
            client,
            snapshot.model,
            batch_size=snapshot.state.shape[0],
            version=snapshot.version,
            seed=snapshot.seed,
            server_state=server_state,
        )
        if session.state_size != snapshot.state.shape[1]:
            raise ValueError(
                f"Snapshot state width {snapshot.state.shape[1]} does not match the model's {session.state_size}."
            )
        session.state, session.pending = snapshot.state.copy(), snapshot.pending.copy()
        session.calls, session.forks = snapshot.calls, snapshot.forks
        return session

    def close(self) -> None:
        """Ends the server-side sequence (when no fork still stands on it); nothing to do with client-held state.

        The session stays usable: its next call starts a new sequence where it stands.
        """
        sequence, self._sequence = self._sequence, None
        if sequence is None:
            return
        sequence.sessions -= 1
        if sequence.sessions:
            return
        inputs = {
            contract.TOKENS: self.pending[:, -1:],
            contract.SEQUENCE_ID: np.array([sequence.sequence_id], np.uint64),
            contract.SEQUENCE_CONTROL_INPUT: np.array([contract.SEQUENCE_END], np.uint32),
        }
        try:  # ending runs one more step, whose answer is not needed
            self._predict(contract.STEP, inputs, output_filter=[contract.SEQUENCE_ID])
        except ServingError as error:
            if error.code != "NOT_FOUND":  # already expired: nothing left to free
                raise

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
