"""`Session` (client-held state) in the client-only install, against a real `rnnserve serve`.

Oracles: one `generate` call on the whole history (the contract: a session
continued across calls equals one long call), the `generate` signature with
the seed a session says it uses, and snapshots restored in another session.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import generate_inputs

from rnnserve import contract
from rnnserve.serving.session import Session, Snapshot, fork_seed

PROMPT = np.array([[5, 9, 12, 1]], np.int32)


def _generate(client, model, history, max_new_tokens, temperature, seed):
    """The oracle: one `generate` call on the whole history, from a zero state."""
    state_size = client.metadata(model).signatures[contract.GENERATE].inputs[contract.STATE].shape[-1]
    inputs = generate_inputs(history, state_size, max_new_tokens, temperature, seed)
    return client.predict(model, inputs, contract.GENERATE)[contract.TOKENS]


def _started(client, model, seed=0) -> Session:
    session = Session(client, model, seed=seed)
    session.feed(PROMPT)
    session.generate(3, temperature=0.0)
    return session


def test_continuing_a_session_equals_one_long_greedy_generate(client, model):
    session = Session(client, model)
    session.feed(PROMPT)
    chunks = [session.generate(n, temperature=0.0) for n in (4, 1, 5)]
    np.testing.assert_array_equal(
        np.concatenate(chunks, axis=1), _generate(client, model, PROMPT, 10, 0.0, 0)
    )


def test_default_seed_forks_draw_different_continuations(client, model):
    session = _started(client, model, seed=11)
    first, second = session.fork(), session.fork()
    drawn = [s.generate(24, temperature=1.0) for s in (session, first, second)]
    assert not np.array_equal(drawn[0], drawn[1])
    assert not np.array_equal(drawn[1], drawn[2])
    assert not np.array_equal(drawn[0], drawn[2])


def test_a_fork_samples_with_its_derived_seed_from_the_shared_past(client, model):
    session = Session(client, model, seed=11)
    session.feed(PROMPT)
    history = np.concatenate([PROMPT, session.generate(3, temperature=0.0)], axis=1)
    fork = session.fork()  # the session's first fork, after one call
    tokens = fork.generate(10, temperature=1.0)
    np.testing.assert_array_equal(tokens, _generate(client, model, history, 10, 1.0, fork_seed(11, 1, 0)))


def test_forks_of_the_same_history_reproduce(client, model):
    a = _started(client, model, seed=3).fork().generate(16, temperature=1.0)
    b = _started(client, model, seed=3).fork().generate(16, temperature=1.0)
    np.testing.assert_array_equal(a, b)


def test_an_explicit_seed_reproduces_exactly_in_parent_and_fork(client, model):
    session = _started(client, model)
    fork = session.fork()
    np.testing.assert_array_equal(
        session.generate(12, temperature=1.0, seed=7), fork.generate(12, temperature=1.0, seed=7)
    )
    again = _started(client, model).fork(seed=99).generate(8, temperature=1.0)
    np.testing.assert_array_equal(_started(client, model).fork(seed=99).generate(8, temperature=1.0), again)


def test_a_fork_leaves_its_parent_unchanged(client, model):
    session, witness = _started(client, model), _started(client, model)
    session.fork().generate(9, temperature=1.0)
    np.testing.assert_array_equal(session.generate(6, temperature=0.0), witness.generate(6, temperature=0.0))


def test_a_snapshot_restores_the_same_future_in_another_session(client, model):
    session = _started(client, model, seed=5)
    data = session.snapshot().to_bytes()
    expected = session.generate(10, temperature=0.8)
    restored = Session.restore(client, Snapshot.from_bytes(data))
    np.testing.assert_array_equal(restored.generate(10, temperature=0.8), expected)
    assert restored.version == session.version == 1


def test_text_in_text_out(client, model):
    session = Session(client, model)
    session.feed_text("the ")
    text = session.generate_text(12, temperature=0.0)
    assert isinstance(text, str) and len(text) == 12


def test_generate_needs_a_prompt(client, model):
    with pytest.raises(ValueError, match="feed a prompt"):
        Session(client, model).generate(3)


def test_a_server_state_session_draws_the_client_held_tokens_and_snapshots_alike(client, model):
    held, kept = Session(client, model, seed=4), Session(client, model, seed=4, server_state=True)
    with kept:
        for session in (held, kept):
            session.feed(PROMPT)
            session.generate(5, temperature=1.0)
        fork = kept.fork()
        np.testing.assert_array_equal(
            fork.generate(4, temperature=1.0), held.fork().generate(4, temperature=1.0)
        )
        fork.close()
        restored = Session.restore(client, kept.snapshot())  # client-held, from the server's sequence
        expected = held.generate(6, temperature=1.0)
        np.testing.assert_array_equal(kept.generate(6, temperature=1.0), expected)
        np.testing.assert_array_equal(restored.generate(6, temperature=1.0), expected)
        assert "".join(kept.stream_text(8, 3, temperature=1.0)) == "".join(
            held.stream_text(8, 3, streaming=False, temperature=1.0)
        )
