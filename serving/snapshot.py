"""A session's saved position (`Snapshot`) and the seed streams of sessions and their forks.

A `Snapshot` is what `Session.snapshot()` returns and `Session.restore()`
takes: model, version, state, pending tokens and seed stream, as numpy
arrays, serialized with `to_bytes()` (a numpy .npz) to resume in another
process, in either of the session's modes. Each `generate` call of a session
samples with `seed + SEED_STRIDE * calls`; a fork starts a seed stream of its
own at `fork_seed(...)`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io

import numpy as np

# Each generate call of a session samples with its own seed, derived from the
# session seed and the call count, so chunks are not copies of each other.
SEED_STRIDE = 1_000_003
SEED_RANGE = 2**63  # the contract's `seed` is an int64; seeds stay non-negative


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
