"""`Session(server_state=True)`: the server keeps the state; the text is the client-held session's.

Oracle: a client-held `Session` (itself checked against direct signature
calls in test_session.py) driven through the same calls with the same
seeds, greedy and sampled: the server-side sequences must draw exactly the
same tokens, also after forks, snapshots and restores in either mode; and
the server's own `live_sequences` gauge on its Prometheus page, which must
go back down when the sessions close.
"""

import numpy as np
import pytest
from conftest import LM
from test_sequence_limits import live_sequences

from rnnserve.serving.client import PredictionClient
from rnnserve.serving.rest_client import RestClient
from rnnserve.serving.session import Session, Snapshot

PROMPT = np.array([[5, 9, 12, 1]], np.int32)
SAMPLINGS = {"greedy": {"temperature": 0.0}, "sampled": {"temperature": 1.0, "top_k": 8}}


@pytest.fixture(params=["grpc", "rest"])
def client(request, server):
    if request.param == "grpc":
        with PredictionClient(f"127.0.0.1:{server.grpc_port}", timeout=30) as opened:
            yield opened
    else:
        yield RestClient(f"127.0.0.1:{server.rest_port}", timeout=30)


def pair(client, seed=7):
    """A client-held session and a server-state one, both fed PROMPT."""
    sessions = Session(client, LM, seed=seed), Session(client, LM, seed=seed, server_state=True)
    for session in sessions:
        session.feed(PROMPT)
    return sessions


@pytest.mark.parametrize("sampling", SAMPLINGS.values(), ids=SAMPLINGS)
def test_a_server_state_session_draws_the_client_held_sessions_tokens(client, sampling):
    held, kept = pair(client)
    for count in (3, 1, 6, 5):
        np.testing.assert_array_equal(kept.generate(count, **sampling), held.generate(count, **sampling))
    assert kept.sequence_id != 0 and held.sequence_id == 0
    np.testing.assert_array_equal(kept.pending, held.pending)
    kept.close()


@pytest.mark.parametrize("sampling", SAMPLINGS.values(), ids=SAMPLINGS)
def test_forks_on_the_server_continue_like_client_held_forks(client, sampling):
    held, kept = pair(client)
    runs = []
    for parent in (held, kept):
        parent.generate(3, **sampling)
        first, second = parent.fork(), parent.fork()
        # the parent moves first (it forks the shared sequence), then a fork continues it
        drawn = [
            parent.generate(5, **sampling),
            first.generate(6, **sampling),
            second.generate(4, **sampling),
        ]
        drawn += [first.generate(3, **sampling), parent.generate(2, **sampling)]
        runs.append(drawn)
        ids = {session.sequence_id for session in (parent, first, second)}
        for session in (parent, first, second):
            session.close()
    for got, expected in zip(runs[1], runs[0]):
        np.testing.assert_array_equal(got, expected)
    assert len(ids) == 3 and 0 not in ids
    if sampling["temperature"]:
        assert not np.array_equal(runs[0][1][:, :4], runs[0][2])  # default-seed forks draw their own


def test_a_fork_before_the_first_call_is_a_copy_on_the_client(client):
    _, kept = pair(client)
    fork = kept.fork()
    np.testing.assert_array_equal(fork.generate(4, temperature=0.0), kept.generate(4, temperature=0.0))
    assert fork.sequence_id != kept.sequence_id
    fork.close()
    kept.close()


@pytest.mark.parametrize("restore_server_state", [False, True], ids=["into-client-held", "into-server-state"])
def test_a_server_state_snapshot_restores_to_the_client_held_future(client, restore_server_state):
    held, kept = pair(client)
    for session in (held, kept):
        session.generate(4, temperature=1.0)
        session.generate(3, temperature=1.0)
    snapshot = Snapshot.from_bytes(kept.snapshot().to_bytes())
    expected = held.snapshot()
    np.testing.assert_allclose(snapshot.state, expected.state, atol=1e-5)
    np.testing.assert_array_equal(snapshot.pending, expected.pending)
    assert (snapshot.calls, snapshot.seed) == (expected.calls, expected.seed)
    restored = Session.restore(client, snapshot, server_state=restore_server_state)
    future = held.generate(6, temperature=1.0)
    np.testing.assert_array_equal(restored.generate(6, temperature=1.0), future)
    np.testing.assert_array_equal(kept.generate(6, temperature=1.0), future)  # the snapshot moved nothing
    for session in (kept, restored):
        session.close()


def test_next_logits_leaves_the_server_state_session_where_it_was(client):
    held, kept = pair(client)
    for session in (held, kept):
        session.generate(5, temperature=0.0)
    np.testing.assert_allclose(kept.next_logits(), held.next_logits(), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(kept.generate(4, temperature=0.0), held.generate(4, temperature=0.0))
    kept.close()


def test_closing_ends_the_sequences_and_a_closed_session_can_go_on(client, server):
    before = live_sequences(server)
    held, kept = pair(client)
    with kept:
        for session in (held, kept):
            session.generate(3, temperature=1.0)
        fork = kept.fork()
        fork.generate(2, temperature=0.0)  # two sequences now
        assert live_sequences(server) == before + 2
        fork.close()
        assert live_sequences(server) == before + 1
    assert live_sequences(server) == before and kept.sequence_id == 0
    # where it stood is known on the client: the next call starts a new sequence there
    np.testing.assert_array_equal(kept.generate(5, temperature=1.0), held.generate(5, temperature=1.0))
    assert live_sequences(server) == before + 1
    kept.close()
    kept.close()  # closing twice is harmless
    assert live_sequences(server) == before


def test_a_server_state_session_is_one_row(client):
    with pytest.raises(ValueError, match="server-side sequence is one row"):
        Session(client, LM, batch_size=2, server_state=True)
