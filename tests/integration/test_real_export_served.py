"""The pipeline end to end: a real rnnserve export, served by the embedded
server, queried with TF Serving's own gRPC stubs and over REST, answers
exactly what the SavedModel answers when called directly; a client Session
streams the same text as one greedy `generate_text`."""

import json
import urllib.request

import grpc
import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from rnnserve.models import build_language_model
from rnnserve.serving.client import PredictionClient
from rnnserve.serving.config import ServerOptions
from rnnserve.serving.rest_client import RestClient
from rnnserve.serving.server import ModelServer
from rnnserve.serving.session import Session
from rnnserve.serving.tensors import to_ndarray, to_tensor_proto
from rnnserve.training.export import export_language_model
from rnnserve.training.vocab import Vocabulary

MODEL = "charlm"
TEXT = "the quick brown fox jumps over the lazy dog. "


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(version dir, running server) for a two-layer GRU language model (state width 2·16 = 32)."""
    keras.utils.set_random_seed(3)
    vocab = Vocabulary.build(TEXT)
    model = build_language_model(len(vocab), cell="gru", units=16, num_layers=2, embedding_dim=8)
    for weight in model.weights:  # sharper distributions than the initial ones
        weight.assign(np.random.default_rng(0).standard_normal(weight.shape).astype("float32"))
    base = tmp_path_factory.mktemp("exports") / MODEL
    version_dir = export_language_model(model, vocab, str(base), max_new_tokens_limit=64)
    server = ModelServer(ServerOptions.for_model(MODEL, str(base), port=0, rest_api_port=0)).start()
    yield version_dir, server
    server.stop()


def direct(version_dir, signature, inputs):
    loaded = tf.saved_model.load(str(version_dir))
    outputs = loaded.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()})
    return {k: v.numpy() for k, v in outputs.items()}


SAMPLING = {
    "max_new_tokens": np.int32(12),
    "temperature": np.float32(0.9),
    "top_k": np.int32(5),
    "seed": np.int64(11),
}
REQUESTS = {
    "serving_default": {"tokens": np.array([[3, 4, 5, 6], [7, 8, 9, 10]], np.int32)},
    "step": {"tokens": np.array([[3, 4, 5]], np.int32), "state": np.full((1, 32), 0.1, np.float32)},
    "generate": {
        "tokens": np.array([[3], [4]], np.int32),
        "state": np.zeros((2, 32), np.float32),
        **SAMPLING,
    },
    "generate_text": {"prompt": np.array([b"the ", b"lazy d"], object), **SAMPLING},
    "encode": {"text": np.array([b"fox", b"dog?"], object)},
    "decode": {"tokens": np.array([[3, 4, 5]], np.int32)},
}


@pytest.mark.parametrize("signature", sorted(REQUESTS))
def test_grpc_predict_equals_a_direct_savedmodel_call(served, signature):
    version_dir, server = served
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = signature
    for name, value in REQUESTS[signature].items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        reply = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
    expected = direct(version_dir, signature, REQUESTS[signature])
    assert set(reply.outputs) == set(expected)
    for name, value in expected.items():
        got = tf.make_ndarray(reply.outputs[name])
        if value.dtype == object:
            np.testing.assert_array_equal(got, value)
        else:
            np.testing.assert_allclose(got, value, atol=1e-6)
    assert reply.model_spec.version.value == 1


def test_rest_columnar_predict_equals_a_direct_call(served):
    version_dir, server = served
    body = {
        "signature_name": "generate_text",
        "inputs": {"prompt": ["the "], **{k: v.item() for k, v in SAMPLING.items()}},
    }
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.rest_port}/v1/models/{MODEL}:predict",
        data=json.dumps(body).encode(),
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as reply:
        outputs = json.loads(reply.read())["outputs"]
    expected = direct(version_dir, "generate_text", {"prompt": np.array([b"the "], object), **SAMPLING})
    assert outputs == [expected["text"][0].decode()]


def test_session_streaming_in_chunks_equals_one_greedy_generate_text(served):
    version_dir, server = served
    session = Session(PredictionClient(f"127.0.0.1:{server.grpc_port}"), MODEL)
    session.feed_text("the ")
    streamed = "".join(session.decode(chunk)[0] for chunk in session.stream(30, 7, temperature=0.0))
    greedy = {
        "max_new_tokens": np.int32(30),
        "temperature": np.float32(0),
        "top_k": np.int32(0),
        "seed": np.int64(0),
    }
    expected = direct(version_dir, "generate_text", {"prompt": np.array([b"the "], object), **greedy})
    assert streamed == expected["text"][0].decode()


def test_the_tensor_codec_round_trips_what_tensorflow_encodes(served):
    """Our numpy ↔ TensorProto codec (the client side) agrees with TensorFlow's."""
    for value in REQUESTS["generate"].values():
        np.testing.assert_array_equal(to_ndarray(tf.make_tensor_proto(value)), value)
        np.testing.assert_array_equal(tf.make_ndarray(to_tensor_proto(value)), value)


def rest_predict(server, body) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.rest_port}/v1/models/{MODEL}:predict",
        data=json.dumps(body).encode(),
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as reply:
        return json.loads(reply.read())


def test_scalars_sent_as_shape_1_over_grpc_equal_a_direct_call_with_scalars(served):
    """docs/savedmodel.md: "The scalar inputs also accept shape (1,)"."""
    version_dir, server = served
    as_shape_1 = {name: np.reshape(value, (1,)) for name, value in SAMPLING.items()}
    inputs = {"tokens": np.array([[3], [4]], np.int32), "state": np.zeros((2, 32), np.float32)}
    got = PredictionClient(f"127.0.0.1:{server.grpc_port}", timeout=30).predict(
        MODEL, {**inputs, **as_shape_1}, signature_name="generate"
    )
    expected = direct(version_dir, "generate", {**inputs, **SAMPLING})
    np.testing.assert_array_equal(got["tokens"], expected["tokens"])
    np.testing.assert_allclose(got["state"], expected["state"], atol=1e-6)


@pytest.mark.parametrize(
    "body, key",
    [
        (  # columnar, each scalar as a one-element list
            {
                "signature_name": "generate_text",
                "inputs": {"prompt": ["the "], **{k: [v.item()] for k, v in SAMPLING.items()}},
            },
            "outputs",
        ),
        (  # row format: one instance gives every input a batch dimension of 1
            {
                "signature_name": "generate_text",
                "instances": [{"prompt": "the ", **{k: v.item() for k, v in SAMPLING.items()}}],
            },
            "predictions",
        ),
    ],
    ids=["columnar", "row"],
)
def test_scalars_sent_as_shape_1_over_rest_equal_a_direct_call_with_scalars(served, body, key):
    version_dir, server = served
    expected = direct(version_dir, "generate_text", {"prompt": np.array([b"the "], object), **SAMPLING})
    assert rest_predict(server, body)[key] == [expected["text"][0].decode()]


@pytest.mark.parametrize("transport", ["grpc", "rest"])
@pytest.mark.parametrize("temperature, top_k", [(0.0, 0), (0.9, 0), (0.9, 5)])
def test_a_streamed_generation_equals_the_exports_generate_and_generate_text(
    served, transport, temperature, top_k
):
    """The concatenated stream (gRPC GenerationService / REST Server-Sent Events) is `generate`'s tokens
    and `generate_text`'s text for the same prompt and seed."""
    version_dir, server = served
    if transport == "grpc":
        client = PredictionClient(f"127.0.0.1:{server.grpc_port}", timeout=30)
    else:
        client = RestClient(f"127.0.0.1:{server.rest_port}", timeout=30)
    sampling = {
        "max_new_tokens": np.int32(15),
        "temperature": np.float32(temperature),
        "top_k": np.int32(top_k),
        "seed": np.int64(17),
    }
    encoded = direct(version_dir, "encode", {"text": np.array([b"the lazy "], object)})
    prompt = encoded["tokens"][:, : encoded["lengths"][0]]  # (1, T)
    expected = direct(
        version_dir, "generate", {"tokens": prompt, "state": np.zeros((1, 32), np.float32), **sampling}
    )
    text = direct(version_dir, "generate_text", {"prompt": np.array([b"the lazy "], object), **sampling})[
        "text"
    ]
    with client.generate_stream(
        MODEL, prompt="the lazy ", max_new_tokens=15, temperature=temperature, top_k=top_k, seed=17
    ) as stream:
        pieces = list(stream)
    assert [token for piece in pieces for token in piece.token_ids] == expected["tokens"][0].tolist()
    assert "".join(piece.text for piece in pieces) == text[0].decode()
    np.testing.assert_allclose(stream.end.state, expected["state"][0], atol=1e-5)


@pytest.mark.parametrize("server_state", [False, True], ids=["client-held", "server-state"])
def test_a_sessions_streamed_text_is_its_chunked_generate_text_with_top_k(served, server_state):
    """`Session.stream_text` over the streaming API draws what the export's `generate` draws chunk by chunk."""
    _, server = served
    with PredictionClient(f"127.0.0.1:{server.grpc_port}", timeout=30) as client:
        chunked = Session(client, MODEL, seed=5)
        chunked.feed_text("the ")
        sampling = {"temperature": 0.9, "top_k": 5}
        expected = "".join(chunked.decode(tokens)[0] for tokens in chunked.stream(30, 7, **sampling))
        with Session(client, MODEL, seed=5, server_state=server_state) as session:
            session.feed_text("the ")
            assert client.offers_streaming()
            assert "".join(session.stream_text(30, 7, **sampling)) == expected
