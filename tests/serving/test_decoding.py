"""Streaming generation through `ServerCore.generate_stream`, against the export's own signatures.

The oracle is a real rnnserve export (`export_language_model`, whose
`generate` samples with the contract's rule) called directly through
TensorFlow's loader: a stream's tokens must equal `generate`'s with the same
prompt, state and seed, its final state `generate`'s state output, and its
text `decode` of its tokens; alone, and among 15 other streams decoding at
the same time. Cancellation and batching are measured with the server's
own counters.
"""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import threading
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import CLS, start_server
from conftest import LM as FIXTURE_LM
from google.protobuf import text_format
from tensorflow_serving.apis import model_pb2

from rnnserve import contract
from rnnserve.models import build_language_model
from rnnserve.serving.config_protos import BatchingParameters
from rnnserve.serving.decoding import Piece, Stream, StreamEnd, StreamParams
from rnnserve.serving.errors import ServingError
from rnnserve.training.export import export_language_model
from rnnserve.training.vocab import Vocabulary

LM, WORDS = "lm", "wordlm"
CORPUS = "the quick brown fox jumps over the lazy dog. a fox, a dog; the end!\n"
LIMIT = 6000  # the export's max_new_tokens_limit: room for a long stream to cancel
S = 2 * 16  # two GRU layers of 16 units


def export(base, level="char", seed=3, version=None, limit=LIMIT) -> str:
    keras.utils.set_random_seed(seed)
    vocab = Vocabulary.build(CORPUS, level=level)
    model = build_language_model(len(vocab), cell="gru", units=16, num_layers=2, embedding_dim=8)
    rng = np.random.default_rng(seed)
    for weight in model.weights:  # sharper distributions than the initial ones
        weight.assign(rng.standard_normal(weight.shape).astype("float32"))
    return export_language_model(
        model, vocab, base, version=version, max_new_tokens_limit=limit, verify=False
    )


@pytest.fixture(scope="module")
def bases(tmp_path_factory, exports):
    root = tmp_path_factory.mktemp("decoding")
    char_dir = export(str(root / LM))
    word_dir = export(str(root / WORDS), level="word")
    return {
        LM: str(root / LM),
        WORDS: str(root / WORDS),
        CLS: exports[CLS],
        "ownrule": exports[FIXTURE_LM],  # a hand-written export whose top-k sampling is its own
        "dirs": (char_dir, word_dir),
    }


@pytest.fixture(scope="module")
def server(bases):
    running = start_server({name: bases[name] for name in (LM, WORDS, CLS)})
    yield running
    running.stop(grace=2)


class Direct:
    """One version's signatures through TF2's loader, state held by the caller (the oracle)."""

    def __init__(self, path):
        self.signatures = tf.saved_model.load(path).signatures

    def generate(self, tokens, state=None, n=8, temperature=0.0, top_k=0, seed=0):
        state = np.zeros((1, S), np.float32) if state is None else np.asarray(state, np.float32).reshape(1, S)
        out = self.signatures["generate"](
            tokens=tf.constant([tokens], tf.int32),
            state=tf.constant(state),
            max_new_tokens=tf.constant(n, tf.int32),
            temperature=tf.constant(temperature, tf.float32),
            top_k=tf.constant(top_k, tf.int32),
            seed=tf.constant(seed, tf.int64),
        )
        return out["tokens"].numpy()[0].tolist(), out["state"].numpy()[0]

    def step(self, tokens, state):
        out = self.signatures["step"](tokens=tf.constant(tokens, tf.int32), state=tf.constant(state))
        return out["logits"].numpy(), out["state"].numpy()

    def encode(self, text):
        out = self.signatures["encode"](text=tf.constant([text]))
        return out["tokens"].numpy()[0, : out["lengths"].numpy()[0]].tolist()

    def decode(self, tokens):
        return self.signatures["decode"](tokens=tf.constant([tokens], tf.int32))["text"].numpy()[0].decode()


@pytest.fixture(scope="module")
def direct(bases):
    return Direct(bases["dirs"][0])


def spec(name=LM, version=None):
    model_spec = model_pb2.ModelSpec(name=name)
    if version is not None:
        model_spec.version.value = version
    return model_spec


def run(core, params, name=LM, **kwargs):
    """(pieces, end) of one stream read to its end."""
    with core.generate_stream(spec(name, **kwargs), params, entrypoint="GRPC") as stream:
        pieces = list(stream)
    return pieces, stream.end


def tokens_of(pieces):
    return [token for piece in pieces for token in piece.token_ids]


def sample(metrics, name, **labels):
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


SAMPLING = {
    "greedy": {"temperature": 0.0},
    "sampled": {"temperature": 0.9, "seed": 11},
    "top_k": {"temperature": 1.2, "top_k": 4, "seed": -5},
}


@pytest.mark.parametrize("mode", sorted(SAMPLING))
def test_a_stream_is_generate_with_the_same_prompt_state_and_seed(server, direct, mode):
    state = np.random.default_rng(1).normal(0, 0.3, S).astype(np.float32)  # a client-held start state
    prompt = direct.encode("the lazy ")
    expected, expected_state = direct.generate(prompt, state, n=40, **SAMPLING[mode])
    pieces, end = run(
        server.core, StreamParams(tokens=prompt, state=state, max_new_tokens=40, **SAMPLING[mode])
    )
    assert tokens_of(pieces) == expected
    assert [len(piece.token_ids) for piece in pieces] == [1] * 40
    assert "".join(piece.text for piece in pieces) == direct.decode(expected)
    assert (end.finish_reason, end.generated_tokens, end.last_token) == ("length", 40, expected[-1])
    np.testing.assert_allclose(end.state, expected_state, atol=1e-5)
    assert (end.model_name, end.version, end.sequence_id) == (LM, 1, 0)


def test_a_text_prompt_is_encoded_by_the_model(server, direct):
    pieces, _ = run(server.core, StreamParams(prompt="quick ", max_new_tokens=12, temperature=0.0))
    assert tokens_of(pieces) == direct.generate(direct.encode("quick "), n=12)[0]


def test_word_level_pieces_concatenate_to_decode(server, bases):
    words = Direct(bases["dirs"][1])
    params = StreamParams(prompt="the fox", max_new_tokens=30, temperature=1.0, seed=4)
    pieces, _ = run(server.core, params, name=WORDS)
    expected, _ = words.generate(words.encode("the fox"), n=30, temperature=1.0, seed=4)
    assert tokens_of(pieces) == expected
    assert "".join(piece.text for piece in pieces) == words.decode(expected)


def test_sixteen_concurrent_streams_each_equal_their_solo_generate(server, direct):
    metrics = server.metrics
    batches_before = sample(metrics, ":rnnserve:decode_batch_size_count")
    single_before = sample(metrics, ":rnnserve:decode_batch_size_bucket", le="1.0")
    prompts = ["the ", "a fox", "dog. ", "lazy", "q", "jumps over ", "brown", "end"]
    requests = [
        dict(
            tokens=direct.encode(prompts[i % len(prompts)]),
            max_new_tokens=20 + 7 * i,
            temperature=[0.0, 0.8, 1.3, 0.5][i % 4],
            top_k=[0, 0, 5, 3][i % 4],
            seed=100 + i,
        )
        for i in range(16)
    ]
    start = threading.Barrier(16)

    def one(i):
        start.wait()
        time.sleep(0.01 * i)  # streams join while others are decoding
        return run(server.core, StreamParams(**requests[i]))

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(16)))
    for request, (pieces, end) in zip(requests, results):
        expected, expected_state = direct.generate(
            request["tokens"],
            n=request["max_new_tokens"],
            **{k: request[k] for k in ("temperature", "top_k", "seed")},
        )
        assert tokens_of(pieces) == expected, request
        # A (16, H) matmul sums in another order than a (1, H) one: float32 rounding, grown over 100+ steps.
        np.testing.assert_allclose(end.state, expected_state, atol=2e-4)
    batches = sample(metrics, ":rnnserve:decode_batch_size_count") - batches_before
    single = sample(metrics, ":rnnserve:decode_batch_size_bucket", le="1.0") - single_before
    assert batches > single, "no decode step had more than one row"
    assert batches < sum(request["max_new_tokens"] for request in requests)


def test_a_stop_string_ends_the_stream_just_before_it(server, direct):
    prompt = direct.encode("the ")
    expected, _ = direct.generate(prompt, n=60, temperature=1.0, seed=9)
    text = direct.decode(expected)
    stop = text[20:23]
    at = text.index(stop)
    needed = next(n for n in range(1, 61) if stop in direct.decode(expected[:n]))  # tokens until it appears
    params = StreamParams(
        tokens=prompt, max_new_tokens=60, temperature=1.0, seed=9, stop=("never-there", stop)
    )
    pieces, end = run(server.core, params)
    assert "".join(piece.text for piece in pieces) == text[:at]
    assert tokens_of(pieces) == expected[:needed]
    assert (end.finish_reason, end.generated_tokens) == ("stop", needed)
    assert not any(stop in piece.text for piece in pieces)


def test_text_that_may_become_a_stop_string_is_held_back_then_released(server, direct):
    prompt = direct.encode("a ")
    expected, _ = direct.generate(prompt, n=30)
    text = direct.decode(expected)
    first = text[:2]
    never = first + "\x00"  # starts like the text, never completes
    pieces, end = run(
        server.core, StreamParams(tokens=prompt, max_new_tokens=30, temperature=0.0, stop=(never,))
    )
    assert "".join(piece.text for piece in pieces) == text and end.finish_reason == "length"
    assert pieces[0].text == pieces[1].text == ""  # "t", "th": both could still become the stop string
    assert pieces[2].text.startswith(first)  # released once they cannot


def error_of(core, params, name=LM, sentence=True):
    with pytest.raises(ServingError) as info:
        core.generate_stream(spec(name), params, entrypoint="GRPC")
    message = info.value.message
    if sentence:  # ours; TF Serving's own messages (an unknown model) are kept as TF Serving words them
        assert message.endswith(".") and "\n" not in message and message.count(". ") == 0, message
    return info.value.code, message


@pytest.mark.parametrize(
    "params, code, words",
    [
        (StreamParams(tokens=[3], max_new_tokens=0), "INVALID_ARGUMENT", "max_new_tokens"),
        (StreamParams(tokens=[3], max_new_tokens=LIMIT + 1), "INVALID_ARGUMENT", f"[1, {LIMIT}]"),
        (StreamParams(tokens=[3], temperature=-1.0), "INVALID_ARGUMENT", "temperature"),
        (StreamParams(tokens=[3], top_k=999), "INVALID_ARGUMENT", "top_k"),
        (StreamParams(tokens=[3], stop=tuple("abcdefghijklmnopq")), "INVALID_ARGUMENT", "at most 16"),
        (StreamParams(tokens=[3], stop=("x" * 257,)), "INVALID_ARGUMENT", "256"),
        (StreamParams(tokens=[3], stop=("",)), "INVALID_ARGUMENT", "stop string"),
        (StreamParams(tokens=[3, 999]), "INVALID_ARGUMENT", "every id must be in"),
        (StreamParams(tokens=[]), "INVALID_ARGUMENT", "at least one token"),
        (StreamParams(prompt=""), "INVALID_ARGUMENT", "at least one token"),
        (StreamParams(prompt="a", tokens=[3]), "INVALID_ARGUMENT", "exactly one"),
        (StreamParams(), "INVALID_ARGUMENT", "exactly one"),
        (StreamParams(tokens=[3], state=np.zeros(5, np.float32)), "INVALID_ARGUMENT", f"({S},)"),
        (StreamParams(tokens=[3], sequence_id=12345), "NOT_FOUND", "12345"),
        (StreamParams(tokens=[3], sequence_control=9), "INVALID_ARGUMENT", "sequence control"),
    ],
)
def test_bad_requests_fail_before_any_piece_with_one_sentence(server, params, code, words):
    got_code, message = error_of(server.core, params)
    assert got_code == code and words in message, message


def test_empty_fields_of_a_wire_message_count_as_absent(server, direct):
    expected = direct.generate([5, 6], n=4)[0]
    pieces, _ = run(
        server.core, StreamParams(prompt="", tokens=[5, 6], state=[], max_new_tokens=4, temperature=0.0)
    )
    assert tokens_of(pieces) == expected
    _, end = run(server.core, StreamParams(tokens=[5], state=[], max_new_tokens=2, sequence_control=1))
    _, end = run(
        server.core, StreamParams(tokens=[5], state=[], max_new_tokens=2, sequence_id=end.sequence_id)
    )
    assert end.sequence_id > 0


def test_unknown_models_and_models_that_are_not_language_models(server):
    assert error_of(server.core, StreamParams(tokens=[3]), name="nope", sentence=False)[0] == "NOT_FOUND"
    code, message = error_of(server.core, StreamParams(tokens=[3]), name=CLS)
    assert code == "FAILED_PRECONDITION" and "not a language model" in message


def test_a_cancelled_stream_stops_the_servers_work_within_one_step(server):
    metrics, counter = server.metrics, ":rnnserve:generated_tokens_total"
    before = sample(metrics, counter, model_name=LM)
    cancelled_before = sample(metrics, ":rnnserve:streams_total", model_name=LM, finish_reason="cancelled")
    stream = server.core.generate_stream(
        spec(), StreamParams(tokens=[3], max_new_tokens=5000, temperature=1.0), entrypoint="GRPC"
    )
    pieces = iter(stream)
    for _ in range(5):
        next(pieces)
    assert sample(metrics, ":rnnserve:active_streams", model_name=LM) == 1
    at_cancel = sample(metrics, counter, model_name=LM)
    stream.cancel()
    stream.close()
    after = sample(metrics, counter, model_name=LM)
    time.sleep(0.3)
    assert sample(metrics, counter, model_name=LM) == after  # the server does no more work for it
    assert after - at_cancel <= 1  # at most the step that was running
    assert stream.end.finish_reason == "cancelled"
    assert stream.end.generated_tokens == after - before < 5000
    assert sample(metrics, ":rnnserve:active_streams", model_name=LM) == 0
    assert (
        sample(metrics, ":rnnserve:streams_total", model_name=LM, finish_reason="cancelled")
        == cancelled_before + 1
    )


# -- server-side sequences ------------------------------------------------------


def on_sequence(core, sequence_id, control, token, n=5, **sampling):
    """(tokens, end) of a stream on a server-side sequence from one token (greedy unless told)."""
    params = StreamParams(
        tokens=[token],
        max_new_tokens=n,
        sequence_id=sequence_id,
        sequence_control=control,
        **{"temperature": 0.0, **sampling},
    )
    pieces, end = run(core, params)
    return tokens_of(pieces), end


def test_a_sequence_streamed_in_parts_equals_generate_with_client_held_state(server, direct):
    prompt = direct.encode("the q")
    pieces, end = run(
        server.core, StreamParams(tokens=prompt, max_new_tokens=10, temperature=0.0, sequence_control=1)
    )
    assert end.state is None and end.sequence_id > 0
    greedy, held = direct.generate(prompt, n=10)
    assert tokens_of(pieces) == greedy
    # Continue from the last token, sampling; the oracle is generate from the client-held state.
    expected, expected_state = direct.generate([end.last_token], held, n=15, temperature=0.7, seed=3)
    tokens, second = on_sequence(
        server.core, end.sequence_id, 0, end.last_token, n=15, temperature=0.7, seed=3
    )
    assert tokens == expected and second.sequence_id == end.sequence_id
    # Fork: the branch starts from a copy; the parent is unchanged.
    fork_expected, _ = direct.generate([second.last_token], expected_state, n=5)
    tokens, branch = on_sequence(server.core, end.sequence_id, 3, second.last_token)
    assert tokens == fork_expected and branch.sequence_id not in (0, end.sequence_id)
    tokens, _ = on_sequence(server.core, end.sequence_id, 2, second.last_token)  # end the parent
    assert tokens == fork_expected  # the same state the fork started from
    assert error_of(server.core, StreamParams(tokens=[3], sequence_id=end.sequence_id))[0] == "NOT_FOUND"
    assert on_sequence(server.core, branch.sequence_id, 2, 3)[1].sequence_id == branch.sequence_id


def test_a_cancelled_stream_on_a_sequence_keeps_what_it_sampled(server, direct):
    stream = server.core.generate_stream(
        spec(),
        StreamParams(tokens=[5], max_new_tokens=5000, temperature=0.0, sequence_control=1),
        entrypoint="GRPC",
    )
    pieces = iter(stream)
    sampled = [next(pieces).token_ids[0] for _ in range(3)]
    stream.close()
    sampled += tokens_of(pieces)  # what was sampled before the cancel took effect
    end = stream.end
    assert end.finish_reason == "cancelled" and end.generated_tokens == len(sampled) < 5000
    tokens, _ = on_sequence(server.core, end.sequence_id, 2, end.last_token, n=4)
    # The oracle: the kept state is `step` over the prompt and every sampled token but the last.
    _, kept = direct.step([[5] + sampled[:-1]], np.zeros((1, S), np.float32))
    assert tokens == direct.generate([sampled[-1]], kept, n=4)[0]


def test_a_stream_that_fails_before_its_first_token_changes_no_sequence(server, direct):
    _, end = run(server.core, StreamParams(tokens=[5], max_new_tokens=3, temperature=0.0, sequence_control=1))
    error_of(server.core, StreamParams(tokens=[999], sequence_id=end.sequence_id))
    error_of(server.core, StreamParams(tokens=[5], max_new_tokens=0, sequence_id=end.sequence_id))
    tokens, _ = on_sequence(server.core, end.sequence_id, 2, end.last_token, n=3)
    assert tokens == direct.generate([5], n=6)[0][3:]


def test_a_live_stream_keeps_its_version_loaded_through_a_hot_reload(tmp_path):
    base, endless = str(tmp_path / LM), 10**7  # a stream that outlives the test
    export(base, version=1, limit=endless)
    running = start_server({LM: base})
    try:
        manager = running.manager
        stream = running.core.generate_stream(
            spec(), StreamParams(tokens=[3], max_new_tokens=endless, temperature=0.0), entrypoint="GRPC"
        )
        pieces = iter(stream)
        next(pieces)
        export(base, seed=4, version=2, limit=endless)

        def state_of():
            return {record.version: record.state for record in manager.status(spec())}

        deadline = time.monotonic() + 60
        while state_of().get(2) != "AVAILABLE" and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # a few polls of the version source
        assert state_of() == {2: "AVAILABLE", 1: "AVAILABLE"}
        next(pieces)  # still decoding on version 1
        stream.close()
        assert stream.end.version == 1
        deadline = time.monotonic() + 60
        while 1 in state_of() and state_of()[1] != "END" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert state_of().get(1, "END") == "END"
        _, end = run(running.core, StreamParams(tokens=[3], max_new_tokens=2))
        assert end.version == 2
    finally:
        running.stop(grace=2)
        shutil.rmtree(base, ignore_errors=True)


def test_stopping_the_server_ends_its_live_streams_as_cancelled(bases):
    running = start_server({LM: bases[LM]})
    stream = running.core.generate_stream(
        spec(), StreamParams(tokens=[3], max_new_tokens=5000), entrypoint="GRPC"
    )
    next(iter(stream))
    started = time.monotonic()
    running.stop(grace=0)
    assert time.monotonic() - started < 10  # not the 60 s a version waits for requests in flight
    assert stream.end.finish_reason == "cancelled"


# -- unary batching ---------------------------------------------------------------


@pytest.fixture(scope="module")
def batching_server(bases):
    parameters = text_format.Parse(
        "max_batch_size { value: 16 } batch_timeout_micros { value: 20000 } num_batch_threads { value: 1 }",
        BatchingParameters(),
    )
    running = start_server({LM: bases[LM], "ownrule": bases["ownrule"]}, batching=parameters)
    yield running
    running.stop(grace=2)


def one_token_inputs(token, temperature, seed, sequence_id=None, control=None, state=None):
    inputs = {
        contract.TOKENS: np.array([[token]], np.int32),
        contract.MAX_NEW_TOKENS: np.array(1, np.int32),
        contract.TEMPERATURE: np.array(temperature, np.float32),
        contract.TOP_K: np.array(0 if temperature == 0 else 6, np.int32),
        contract.SEED: np.array(seed, np.int64),
    }
    if state is not None:
        inputs[contract.STATE] = state
    if sequence_id is not None:
        inputs[contract.SEQUENCE_ID] = np.array([sequence_id], np.uint64)
    if control is not None:
        inputs[contract.SEQUENCE_CONTROL_INPUT] = np.array([control], np.uint32)
    return inputs


@pytest.mark.parametrize("temperature", [0.0, 0.9])
def test_sixteen_sequences_of_one_token_generate_calls_batched_equal_each_alone(
    batching_server, direct, temperature
):
    core, metrics, calls = batching_server.core, batching_server.metrics, 6
    generate_spec = model_pb2.ModelSpec(name=LM, signature_name="generate")
    before_count = sample(metrics, ":rnnserve:decode_batch_size_count")
    before_single = sample(metrics, ":rnnserve:decode_batch_size_bucket", le="1.0")

    def drive(i):
        token, sequence_id, got = 1 + i % 20, None, []
        for call in range(calls):
            control = 1 if call == 0 else (2 if call == calls - 1 else None)
            inputs = one_token_inputs(token, temperature, 1000 + i, sequence_id if call else None, control)
            _, outputs = core.predict(generate_spec, inputs, entrypoint="GRPC")
            sequence_id = int(outputs[contract.SEQUENCE_ID][0])
            token = int(outputs[contract.TOKENS][0, 0])
            got.append(token)
        return got

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(drive, range(16)))
    for i, got in enumerate(results):
        token, state, expected = 1 + i % 20, None, []
        for _ in range(calls):  # each call alone, state held by the caller
            tokens, state = direct.generate(
                [token],
                state,
                n=1,
                temperature=temperature,
                top_k=0 if temperature == 0 else 6,
                seed=1000 + i,
            )
            token = tokens[0]
            expected.append(token)
        assert got == expected, i
    count = sample(metrics, ":rnnserve:decode_batch_size_count") - before_count
    single = sample(metrics, ":rnnserve:decode_batch_size_bucket", le="1.0") - before_single
    assert count > single, "no batched decode step had more than one row"


def test_sixteen_sequences_of_step_calls_batched_equal_each_alone(batching_server, direct):
    core, metrics = batching_server.core, batching_server.metrics
    step_spec = model_pb2.ModelSpec(name=LM, signature_name="step")
    batch_metric = ":tensorflow:serving:batching_session:processed_batch_size"
    before_count = sample(metrics, f"{batch_metric}_count", thread_pool_name="batch_threads")
    before_single = sample(metrics, f"{batch_metric}_bucket", thread_pool_name="batch_threads", le="1.0")
    rows = np.random.default_rng(5).integers(1, 20, size=(16, 5))

    def drive(i):
        sequence_id, logits = 0, []
        for call in range(5):
            inputs = {contract.TOKENS: rows[i, call : call + 1][np.newaxis].astype(np.int32)}
            inputs[contract.SEQUENCE_ID] = np.array([sequence_id], np.uint64)
            if call == 0:
                inputs[contract.SEQUENCE_CONTROL_INPUT] = np.array([1], np.uint32)
            _, outputs = core.predict(step_spec, inputs, entrypoint="GRPC")
            sequence_id = int(outputs[contract.SEQUENCE_ID][0])
            logits.append(outputs[contract.LOGITS])
        return logits

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(drive, range(16)))
    for i, logits in enumerate(results):
        state = np.zeros((1, S), np.float32)
        for call in range(5):
            expected, state = direct.step(rows[i, call : call + 1][np.newaxis], state)
            np.testing.assert_allclose(logits[call], expected, atol=1e-5)
    count = sample(metrics, f"{batch_metric}_count", thread_pool_name="batch_threads") - before_count
    single = (
        sample(metrics, f"{batch_metric}_bucket", thread_pool_name="batch_threads", le="1.0") - before_single
    )
    assert count > single, "no batched step had more than one row"


def test_client_held_one_token_generate_calls_are_decoded_together(batching_server, direct):
    core = batching_server.core
    generate_spec = model_pb2.ModelSpec(name=LM, signature_name="generate")
    states = np.random.default_rng(2).normal(0, 0.3, (16, 1, S)).astype(np.float32)

    def call(i):
        _, outputs = core.predict(
            generate_spec, one_token_inputs(3 + i % 9, 0.9, i, state=states[i]), entrypoint="REST"
        )
        return outputs

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(call, range(16)))
    for i, outputs in enumerate(results):
        tokens, state = direct.generate([3 + i % 9], states[i], n=1, temperature=0.9, top_k=6, seed=i)
        assert outputs[contract.TOKENS].tolist() == [tokens]
        np.testing.assert_allclose(outputs[contract.STATE][0], state, atol=1e-5)


def test_one_token_generate_errors_are_the_signatures_own(batching_server):
    inputs = one_token_inputs(999, 0.0, 0, state=np.zeros((1, S), np.float32))
    with pytest.raises(ServingError) as info:
        batching_server.core.predict(
            model_pb2.ModelSpec(name=LM, signature_name="generate"), inputs, entrypoint="GRPC"
        )
    assert info.value.code == "INVALID_ARGUMENT" and "tokens" in info.value.message
    assert os.path.isdir(batching_server.options.model_config.model_config_list.config[0].base_path)


def test_a_version_whose_generate_samples_its_own_way_is_not_batched_through_the_decoder(
    batching_server, bases
):
    own = Direct(os.path.join(bases["ownrule"], "1"))
    generate_spec = model_pb2.ModelSpec(name="ownrule", signature_name="generate")

    def call(i):
        inputs = one_token_inputs(1 + i % 9, 1.0, i, state=np.zeros((1, S), np.float32))
        return batching_server.core.predict(generate_spec, inputs, entrypoint="GRPC")[1]

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(call, range(16)))
    for i, outputs in enumerate(results):
        expected, _ = own.generate([1 + i % 9], n=1, temperature=1.0, top_k=6, seed=i)
        assert outputs[contract.TOKENS].tolist() == [expected]


def test_a_stream_counts_as_one_generate_stream_request(server):
    metric, labels = ":tensorflow:serving:request_latency_count", {"model_name": LM, "API": "GenerateStream"}
    before = sample(server.metrics, metric, entrypoint="REST", status="OK", **labels)
    failed = sample(server.metrics, metric, entrypoint="REST", status="INVALID_ARGUMENT", **labels)
    with server.core.generate_stream(
        spec(), StreamParams(tokens=[3], max_new_tokens=3), entrypoint="REST"
    ) as stream:
        list(stream)
    with pytest.raises(ServingError):
        server.core.generate_stream(spec(), StreamParams(tokens=[3], max_new_tokens=0), entrypoint="REST")
    assert sample(server.metrics, metric, entrypoint="REST", status="OK", **labels) == before + 1
    assert (
        sample(server.metrics, metric, entrypoint="REST", status="INVALID_ARGUMENT", **labels) == failed + 1
    )


def test_the_wire_gets_one_piece_per_token_while_it_keeps_up_and_what_it_missed_in_one():
    stream = Stream("lm", 1)
    wire = stream.coalesced()
    stream.put(Piece("a", [3]))
    assert next(wire) == Piece("a", [3])  # a reader that keeps up: one per token
    for text, token in (("b", 4), ("", 5), ("cd", 6)):  # sampled while the reader was away
        stream.put(Piece(text, [token]))
    stream.finish(StreamEnd("length", 4, None, 6, 0, "lm", 1), None)
    assert list(wire) == [Piece("bcd", [4, 5, 6])]  # the same text and tokens, in one
    assert stream.end.generated_tokens == 4
