"""`PredictionClient` and `RestClient` in the client-only install, against a real `rnnserve serve`.

Oracles: the SavedModel contract (docs/savedmodel.md: signature names,
dtypes and shapes; `serving_default` is `step` from a zero state; `state`
carries a sequence across calls; greedy `generate` picks the likeliest
token of `step`, never `[UNK]`; `generate_text` is `decode(generate(encode))`),
gRPC and REST agreeing with each other, and TF Serving's status codes.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import generate_inputs

from rnnserve import contract
from rnnserve.serving.errors import ServingError

TOKENS = np.array([[5, 9, 12, 1, 20]], np.int32)  # (1, 5)


def test_metadata_lists_the_language_model_signatures_with_the_contract_dtypes(client, model):
    metadata = client.metadata(model)
    assert metadata.name == model and metadata.version == 1
    assert set(contract.LANGUAGE_MODEL_SIGNATURES) <= set(metadata.signatures)
    step = metadata.signatures[contract.STEP]
    assert step.inputs[contract.TOKENS].dtype == np.int32
    assert step.inputs[contract.TOKENS].shape == (None, None)
    state = step.inputs[contract.STATE]
    assert state.dtype == np.float32 and len(state.shape) == 2 and state.shape[1] > 0
    assert metadata.signatures[contract.GENERATE].inputs[contract.SEED].dtype == np.int64
    assert metadata.signatures[contract.GENERATE].inputs[contract.SEED].shape == ()
    assert metadata.signatures[contract.GENERATE_TEXT].inputs[contract.PROMPT].dtype == object
    assert metadata.signatures[contract.SERVING_DEFAULT].outputs[contract.LOGITS].dtype == np.float32


def test_status_and_health_report_a_serving_model(client, grpc_client, model):
    [version] = client.status(model)
    assert (version.version, version.state, version.error_code) == (1, "AVAILABLE", "OK")
    assert grpc_client.health() == "SERVING"


def test_an_unknown_model_is_not_found(client):
    with pytest.raises(ServingError) as raised:
        client.status("no-such-model")
    assert raised.value.code == "NOT_FOUND"


def test_serving_default_is_step_from_a_zero_state(client, model):
    logits = client.predict(model, {contract.TOKENS: TOKENS})[contract.LOGITS]  # (1, 5, V)
    state = client.metadata(model).signatures[contract.STEP].inputs[contract.STATE]
    zeros = np.zeros((1, state.shape[1]), np.float32)
    step = client.predict(
        model, {contract.TOKENS: TOKENS, contract.STATE: zeros}, signature_name=contract.STEP
    )
    assert logits.shape[:2] == (1, 5) and logits.dtype == np.float32
    np.testing.assert_allclose(step[contract.LOGITS], logits, atol=1e-5)


def test_step_carries_the_sequence_in_state(client, model):
    size = client.metadata(model).signatures[contract.STEP].inputs[contract.STATE].shape[1]
    whole = client.predict(
        model,
        {contract.TOKENS: TOKENS, contract.STATE: np.zeros((1, size), np.float32)},
        signature_name="step",
    )
    first = client.predict(
        model, {contract.TOKENS: TOKENS[:, :2], contract.STATE: np.zeros((1, size), np.float32)}, "step"
    )
    rest = client.predict(
        model, {contract.TOKENS: TOKENS[:, 2:], contract.STATE: first[contract.STATE]}, "step"
    )
    np.testing.assert_allclose(rest[contract.LOGITS], whole[contract.LOGITS][:, 2:], atol=1e-5)
    np.testing.assert_allclose(rest[contract.STATE], whole[contract.STATE], atol=1e-5)


def test_greedy_generate_picks_the_likeliest_known_token_of_step(client, model, state_size):
    generated = client.predict(model, generate_inputs(TOKENS, state_size, 6), contract.GENERATE)
    tokens = generated[contract.TOKENS]  # (1, 6)
    assert tokens.shape == (1, 6) and tokens.dtype == np.int32
    history = TOKENS
    for position in range(6):  # the oracle: one step call per token, argmax without [UNK]
        logits = client.predict(model, {contract.TOKENS: history}, contract.SERVING_DEFAULT)[contract.LOGITS]
        last = logits[0, -1].copy()
        last[contract.UNK_TOKEN_ID] = -np.inf
        assert tokens[0, position] == int(np.argmax(last))
        history = np.concatenate([history, tokens[:, position : position + 1]], axis=1)


def test_sampling_is_reproducible_with_a_seed_and_varies_without(client, model, state_size):
    inputs = generate_inputs(TOKENS, state_size, 30, temperature=1.0, seed=42)
    first = client.predict(model, inputs, contract.GENERATE)[contract.TOKENS]
    again = client.predict(model, inputs, contract.GENERATE)[contract.TOKENS]
    other = client.predict(model, {**inputs, contract.SEED: np.int64(43)}, contract.GENERATE)[contract.TOKENS]
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert contract.UNK_TOKEN_ID not in first


def test_encode_decode_and_generate_text_agree(client, model, state_size):
    text = np.array([b"the quick fox"], dtype=object)
    encoded = client.predict(model, {contract.TEXT: text}, contract.ENCODE)
    assert encoded[contract.LENGTHS].tolist() == [13]
    decoded = client.predict(model, {contract.TOKENS: encoded[contract.TOKENS]}, contract.DECODE)
    assert decoded[contract.TEXT].tolist() == [b"the quick fox"]
    inputs = generate_inputs(encoded[contract.TOKENS], state_size, 12, temperature=0.7, seed=5)
    tokens = client.predict(model, inputs, contract.GENERATE)[contract.TOKENS]
    expected = client.predict(model, {contract.TOKENS: tokens}, contract.DECODE)[contract.TEXT]
    del inputs[contract.TOKENS], inputs[contract.STATE]
    text_out = client.predict(model, {contract.PROMPT: text, **inputs}, contract.GENERATE_TEXT)
    assert text_out[contract.TEXT].tolist() == expected.tolist()


def test_grpc_and_rest_return_the_same_arrays(grpc_client, rest_client, model, state_size):
    inputs = generate_inputs(TOKENS, state_size, 8, temperature=0.9, seed=3)
    over_grpc = grpc_client.predict(model, inputs, contract.GENERATE)
    over_rest = rest_client.predict(model, inputs, contract.GENERATE)
    np.testing.assert_array_equal(over_grpc[contract.TOKENS], over_rest[contract.TOKENS])
    np.testing.assert_allclose(over_grpc[contract.STATE], over_rest[contract.STATE], atol=1e-6)
    filtered = grpc_client.predict(model, inputs, contract.GENERATE, output_filter=[contract.TOKENS])
    assert set(filtered) == {contract.TOKENS}


def test_a_bad_dtype_is_invalid_argument(grpc_client, model):
    with pytest.raises(ServingError) as raised:
        grpc_client.predict(model, {contract.TOKENS: TOKENS.astype(np.float32)})
    assert raised.value.code == "INVALID_ARGUMENT"


def test_the_grpc_client_on_the_rest_port_says_so(rest_target, model):
    from rnnserve.serving.client import HttpPortError, PredictionClient

    with PredictionClient(rest_target, timeout=10) as wrong, pytest.raises(HttpPortError) as raised:
        wrong.status(model)
    assert "is an HTTP port" in raised.value.message
