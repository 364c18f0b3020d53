"""`Session.stream_text`: the server's streaming API, or chunked `generate` calls, give the same text.

Oracles: the text of a session's chunked `generate` calls decoded by the
model's `decode` signature (the way that works with any TF Serving; the
calls themselves are checked against the signatures in test_session.py),
cut just before the first stop string by plain `str.find`; the server's own
counters (`:rnnserve:streams_total`, `:rnnserve:active_streams`,
`live_sequences`) for which way was taken and what was freed.
"""

import numpy as np
import pytest
from conftest import LM
from test_sequence_limits import live_sequences
from test_streaming_api import metric, wait_until_idle

from rnnserve.serving.client import PredictionClient
from rnnserve.serving.rest_client import RestClient
from rnnserve.serving.session import Session

PROMPT = np.array([[20, 8, 5, 1, 17]], np.int32)
SAMPLINGS = {"greedy": {"temperature": 0.0}, "sampled": {"temperature": 1.0}}
CHUNK = 5


@pytest.fixture(params=["grpc", "rest"])
def client(request, server):
    if request.param == "grpc":
        with PredictionClient(f"127.0.0.1:{server.grpc_port}", timeout=30) as opened:
            yield opened
    else:
        yield RestClient(f"127.0.0.1:{server.rest_port}", timeout=30)


class NoStreaming:
    """A client whose server does not stream (as a real TF Serving): generate_stream must not be called."""

    def __init__(self, client):
        self._client = client

    def __getattr__(self, name):
        return getattr(self._client, name)

    def offers_streaming(self) -> bool:
        return False

    def generate_stream(self, *args, **kwargs):
        raise AssertionError("a server that does not stream was asked to")


class OnlyPredict:
    """A client with TF Serving's calls only (metadata and predict), as clients before streaming."""

    def __init__(self, client):
        self.metadata, self.predict = client.metadata, client.predict


def started(client, server_state=False, seed=3) -> Session:
    session = Session(client, LM, seed=seed, server_state=server_state)
    session.feed(PROMPT)
    return session


def chunked_text(client, count, sampling, server_state=False) -> tuple[str, Session]:
    """The oracle: the session's chunked generate calls, decoded."""
    session = started(client, server_state)
    text = "".join(session.decode(chunk)[0] for chunk in session.stream(count, CHUNK, **sampling))
    return text, session


def streams_total(server) -> float:
    return sum(
        metric(server, ":rnnserve:streams_total", model_name=LM, finish_reason=reason)
        for reason in ("length", "stop", "cancelled")
    )


@pytest.mark.parametrize("server_state", [False, True], ids=["client-held", "server-state"])
@pytest.mark.parametrize("sampling", SAMPLINGS.values(), ids=SAMPLINGS)
def test_streamed_and_chunked_text_are_the_same_and_so_is_what_follows(
    client, server, sampling, server_state
):
    expected, oracle = chunked_text(client, 23, sampling)
    before = streams_total(server)
    streamed = started(client, server_state)
    pieces = list(streamed.stream_text(23, CHUNK, **sampling))
    assert streams_total(server) == before + 5  # 5 + 5 + 5 + 5 + 3 tokens: five streamed calls
    fallback = started(NoStreaming(client), server_state)
    assert "".join(pieces) == "".join(fallback.stream_text(23, CHUNK, **sampling)) == expected
    assert len(pieces) >= 5  # as the server sends them (streams_total says they were streamed)
    follows = oracle.generate(6, **sampling)
    for session in (streamed, fallback):
        np.testing.assert_array_equal(session.generate(6, **sampling), follows)
        session.close()


@pytest.mark.parametrize("streaming", [True, False], ids=["streamed", "chunked"])
def test_the_text_ends_just_before_the_first_stop_string_even_across_calls(client, streaming):
    whole, _ = chunked_text(client, 40, SAMPLINGS["sampled"])
    inside = whole[12:14]  # within the third call's text (tokens 10..14 of a char-level model)
    across = whole[CHUNK * 3 - 1 : CHUNK * 3 + 1]  # the last character of one call and the first of the next
    for stops in ([inside], [across], ["never-in-the-text", across], [whole[30:33], inside]):
        session = started(client)
        text = "".join(
            session.stream_text(40, CHUNK, stop=stops, streaming=streaming, **SAMPLINGS["sampled"])
        )
        cut = min(index for index in (whole.find(stop) for stop in stops) if index >= 0)
        assert text == whole[:cut], stops


def test_without_a_streaming_server_stream_text_falls_back_to_generate_calls(client, server):
    expected, _ = chunked_text(client, 12, SAMPLINGS["sampled"])
    before = streams_total(server)
    session = started(NoStreaming(client))
    assert session.offers_streaming() is False
    assert "".join(session.stream_text(12, CHUNK, **SAMPLINGS["sampled"])) == expected
    old = started(OnlyPredict(client))  # a client without offers_streaming() at all
    assert old.offers_streaming() is False
    assert "".join(old.stream_text(12, CHUNK, **SAMPLINGS["sampled"])) == expected
    assert streams_total(server) == before


def test_leaving_a_stream_early_cancels_it_and_the_session_stays_where_it_was(client, server):
    before = live_sequences(server)
    for server_state in (False, True):
        session, untouched = started(client, server_state), started(client)
        with session:
            # (a stream that starts a server-side sequence and is left before its end leaves the
            # sequence to the server's idle timeout: its id comes with the end; here it continues one)
            np.testing.assert_array_equal(
                session.generate(2, temperature=0.0), untouched.generate(2, temperature=0.0)
            )
            pieces = session.stream_text(60, 60, temperature=0.0)
            next(pieces)
            pieces.close()  # the caller stops reading (as Ctrl-C does)
            wait_until_idle(server)
            expected = untouched.generate(7, temperature=0.0)
            np.testing.assert_array_equal(session.generate(7, temperature=0.0), expected)
        assert live_sequences(server) == before  # the sequence left midway was ended too


def test_a_streamed_server_state_session_keeps_one_sequence_until_closed(client, server):
    before = live_sequences(server)
    with started(client, server_state=True) as session:
        text = "".join(session.stream_text(12, CHUNK, temperature=0.0))
        assert session.sequence_id != 0 and live_sequences(server) == before + 1
    assert live_sequences(server) == before
    assert text == chunked_text(client, 12, SAMPLINGS["greedy"])[0]


def test_stream_text_needs_non_empty_stop_strings_and_one_row(client):
    with pytest.raises(ValueError, match="non-empty stop strings"):
        list(started(client).stream_text(3, stop=[""]))
    batch = Session(client, LM, batch_size=2)
    batch.feed(np.repeat(PROMPT, 2, axis=0))
    with pytest.raises(ValueError, match="one sequence"):
        list(batch.stream_text(3))
