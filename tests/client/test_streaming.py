"""Streaming generation from the client-only install, over gRPC and REST, against `rnnserve serve`.

Oracles: the export's `generate` and `decode` signatures called through the
same client's Predict (the concatenated stream is their tokens and text for
the same prompt, state and seed), and TF Serving's status codes.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import generate_inputs

from rnnserve import contract
from rnnserve.serving.errors import ServingError

PROMPT = [5, 9, 12, 1]


def generated(client, model, state_size, max_new_tokens, temperature=0.0, seed=0):
    """(tokens, text) of the `generate` signature (then `decode`) for PROMPT."""
    inputs = generate_inputs([PROMPT], state_size, max_new_tokens, temperature=temperature, seed=seed)
    tokens = client.predict(model, inputs, signature_name=contract.GENERATE)[contract.TOKENS]  # (1, N)
    text = client.predict(model, {contract.TOKENS: tokens}, signature_name=contract.DECODE)[contract.TEXT]
    text = text[0]
    return tokens[0].tolist(), text.decode("utf-8") if isinstance(text, bytes) else text


def test_the_server_offers_streaming(client):
    assert client.offers_streaming() is True
    assert client.offers_streaming() is True  # cached


@pytest.mark.parametrize("temperature, seed", [(0.0, 0), (0.8, 21)])
def test_the_stream_is_what_generate_answers(client, model, state_size, temperature, seed):
    tokens, text = generated(client, model, state_size, 12, temperature, seed)
    with client.generate_stream(
        model, tokens=PROMPT, max_new_tokens=12, temperature=temperature, seed=seed
    ) as stream:
        pieces = list(stream)
    assert [token for piece in pieces for token in piece.token_ids] == tokens
    assert "".join(piece.text for piece in pieces) == text
    end = stream.end
    assert (end.finish_reason, end.generated_tokens, end.last_token) == ("length", 12, tokens[-1])
    assert end.model == model and end.version == 1
    assert end.state.dtype == np.float32 and end.state.shape == (state_size,)


def test_a_stop_string_ends_the_stream_without_sending_it(client, model, state_size):
    _, text = generated(client, model, state_size, 30, 0.9, 4)
    stop = text[6:8]
    with client.generate_stream(
        model, tokens=PROMPT, max_new_tokens=30, temperature=0.9, seed=4, stop=stop
    ) as stream:
        streamed = "".join(piece.text for piece in stream)
    assert streamed == text[: text.find(stop)]
    assert stream.end.finish_reason == "stop"


def test_cancel_ends_the_iteration_without_an_error(client, model):
    stream = client.generate_stream(model, tokens=PROMPT, max_new_tokens=60)
    count = 0
    for _ in stream:
        count += 1
        if count == 2:
            stream.cancel()
    assert count == 2 and stream.end is None


def test_an_unknown_model_fails_before_the_stream(client):
    with pytest.raises(ServingError) as raised:
        list(client.generate_stream("no-such-model", tokens=PROMPT))
    assert raised.value.code == "NOT_FOUND"


def test_bad_arguments_are_refused_before_anything_is_sent(client, model):
    with pytest.raises(ValueError, match="exactly one"):
        client.generate_stream(model, prompt="a", tokens=PROMPT)
    with pytest.raises(ValueError, match="max_new_tokens"):
        client.generate_stream(model, tokens=PROMPT, max_new_tokens=0)
