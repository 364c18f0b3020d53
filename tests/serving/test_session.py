"""Session over `step`/`generate`, through both clients.

Oracle: direct calls of the SavedModel's `generate` / `step` signatures
(one long call) compared with what a Session assembles from many calls.
"""

import numpy as np
import pytest
from conftest import LM, lm_generate_inputs

from rnnserve.serving.client import PredictionClient
from rnnserve.serving.rest_client import RestClient
from rnnserve.serving.session import Session, Snapshot, fork_seed

PROMPT = np.array([[5, 9, 12, 1]], np.int32)


@pytest.fixture(params=["grpc", "rest"])
def client(request, server):
    if request.param == "grpc":
        with PredictionClient(f"127.0.0.1:{server.grpc_port}", timeout=30) as opened:
            yield opened
    else:
        yield RestClient(f"127.0.0.1:{server.rest_port}", timeout=30)


def test_continuing_across_calls_equals_one_long_generate(client, direct):
    session = Session(client, LM)
    session.feed(PROMPT)
    chunks = [session.generate(n, temperature=0.0) for n in (3, 1, 6, 5)]
    whole = direct("generate", **lm_generate_inputs(PROMPT, max_new_tokens=15))
    np.testing.assert_array_equal(np.concatenate(chunks, axis=1), whole["tokens"])
    np.testing.assert_allclose(session.state, whole["state"], atol=1e-5)


def test_feeding_later_tokens_continues_the_same_sequence(client, direct):
    session = Session(client, LM)
    session.feed(PROMPT[:, :2])
    first = session.generate(2, temperature=0.0)
    session.feed([[7, 8]])
    second = session.generate(4, temperature=0.0)
    history = np.concatenate([PROMPT[:, :2], first, [[7, 8]]], axis=1).astype(np.int32)
    np.testing.assert_array_equal(
        second, direct("generate", **lm_generate_inputs(history, max_new_tokens=4))["tokens"]
    )


def test_fork_gives_two_independent_continuations(client, direct):
    session = Session(client, LM, seed=11)
    session.feed(PROMPT)
    session.generate(3, temperature=0.0)
    fork = session.fork()
    a = session.generate(8, temperature=1.0, seed=1)
    b = fork.generate(8, temperature=1.0, seed=2)
    fork_again = fork.generate(4, temperature=0.0)  # the fork's own future
    replay = Session(client, LM)
    replay.feed(PROMPT)
    replay.generate(3, temperature=0.0)
    np.testing.assert_array_equal(replay.generate(8, temperature=1.0, seed=1), a)  # unaffected by the fork
    other = Session.restore(client, replay.snapshot())
    assert not np.array_equal(a, b)
    replay2 = Session(client, LM)
    replay2.feed(PROMPT)
    replay2.generate(3, temperature=0.0)
    np.testing.assert_array_equal(replay2.generate(8, temperature=1.0, seed=2), b)
    np.testing.assert_array_equal(replay2.generate(4, temperature=0.0), fork_again)
    assert other.version == session.version == 1


def test_default_seed_forks_sample_their_own_seed_stream(client, direct):
    session = Session(client, LM, seed=11)
    session.feed(PROMPT)
    history = np.concatenate([PROMPT, session.generate(3, temperature=0.0)], axis=1)
    first, second = session.fork(), session.fork()
    drawn = [branch.generate(16, temperature=1.0) for branch in (session, first, second)]
    for branch_seed, tokens in zip((11 + 1_000_003, fork_seed(11, 1, 0), fork_seed(11, 1, 1)), drawn):
        expected = direct(
            "generate", **lm_generate_inputs(history, max_new_tokens=16, temperature=1.0, seed=branch_seed)
        )
        np.testing.assert_array_equal(tokens, expected["tokens"])
    assert len({tokens.tobytes() for tokens in drawn}) == 3  # same past, three different futures


def test_snapshot_bytes_restore_to_the_same_future(client):
    session = Session(client, LM)
    session.feed(PROMPT)
    session.generate(2, temperature=0.0)
    data = session.snapshot().to_bytes()
    expected = session.generate(6, temperature=0.5)
    restored = Session.restore(client, Snapshot.from_bytes(data))
    np.testing.assert_array_equal(restored.generate(6, temperature=0.5), expected)


def test_text_helpers_and_next_logits_match_the_signatures(client, direct):
    session = Session(client, LM)
    session.feed_text("hello")
    np.testing.assert_array_equal(session.pending, direct("encode", text=np.array([b"hello"]))["tokens"])
    zeros = np.zeros((1, session.state_size), np.float32)
    expected = direct("step", tokens=session.pending, state=zeros)["logits"][:, -1]
    np.testing.assert_allclose(session.next_logits(), expected, rtol=1e-5, atol=1e-6)
    text = session.generate_text(7, chunk_size=3, temperature=0.0)
    whole = direct(
        "generate_text",
        prompt=np.array([b"hello"]),
        max_new_tokens=np.int32(7),
        temperature=np.float32(0.0),
        top_k=np.int32(0),
        seed=np.int64(0),
    )["text"][0].decode()
    assert text == whole


def test_generate_needs_a_prompt(client):
    with pytest.raises(ValueError, match="feed a prompt"):
        Session(client, LM).generate(3)
