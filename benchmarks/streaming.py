"""Streaming and batching across sequences through `rnnserve serve` (part of `rnnserve bench serving`).

Three measurements on the exported main LSTM (`exported.py`), each against
the server in its own process on 127.0.0.1, over gRPC with the project's
client (`PredictionClient`), one client object per thread:

- streams: `STREAMS` streamed generations of `STREAM_TOKENS` tokens each
  (`rnnserve.GenerationService/Generate`, sampled, each its own seed), run
  one after another, then all at once (the server decodes concurrent
  streams together, one batched `step` per token): aggregate tokens/s of
  both, and their ratio; the same again with the server in this process
  and its streams read straight from `ServerCore.generate_stream` (the
  decoder alone, no gRPC);
- unary sequences: `STREAMS` server-side sequences, each generating one
  token per Predict(`generate`, max_new_tokens 1) call, all at once, with
  `--enable_batching` off and on (the serving benchmark's batching file):
  aggregate tokens/s and p50 latency per call;
- time to first token: a stream's first piece vs the answer of one
  one-token Predict(`generate`) from the same prompt and state, p50 of
  `TTFT_SAMPLES` each, interleaved.
"""

from __future__ import annotations

import time

import numpy as np

from rnnserve import contract
from rnnserve.benchmarks import timing

STREAMS = 16
STREAM_TOKENS = 200
UNARY_CALLS = 50  # one-token calls per sequence
TTFT_SAMPLES = 100


def _client(server):
    from rnnserve.serving.client import PredictionClient

    return PredictionClient(f"127.0.0.1:{server.port}", timeout=120)


def streams(server, model, count=STREAMS, tokens=STREAM_TOKENS):
    """Aggregate tokens/s of `count` gRPC streams one after another, then concurrently."""
    clients = [_client(server) for _ in range(count)]

    def open_stream(index):
        return clients[index].generate_stream(
            model, tokens=[1 + index % 60], max_new_tokens=tokens, temperature=1.0, seed=index
        )

    row = _streams(open_stream, count, tokens)
    for client in clients:
        client.close()
    return row


def decoder_streams(base, model, count=STREAMS, tokens=STREAM_TOKENS):
    """The same as `streams`, read straight from the engine of a server in this process."""
    from tensorflow_serving.apis import model_pb2

    from rnnserve.serving.config import ServerOptions
    from rnnserve.serving.decoding import StreamParams
    from rnnserve.serving.server import ModelServer

    server = ModelServer(ServerOptions.for_model(model, base, port=0, rest_api_port=0)).start()
    spec = model_pb2.ModelSpec(name=model)

    def open_stream(index):
        params = StreamParams(tokens=[1 + index % 60], max_new_tokens=tokens, temperature=1.0, seed=index)
        return server.core.generate_stream(spec, params, entrypoint="GRPC")

    try:
        return _streams(open_stream, count, tokens)
    finally:
        server.stop(grace=1)


def _streams(open_stream, count, tokens):
    generated = [0] * count

    def one(index):
        with open_stream(index) as stream:
            generated[index] = sum(len(piece.token_ids) for piece in stream)

    one(0)  # warm-up: the server's decoder, the stream path, the channel
    started = time.perf_counter()
    for index in range(count):
        one(index)
    sequential = time.perf_counter() - started
    sequential_tokens = sum(generated)
    concurrent = timing.all_at_once(one, count)
    row = {
        "streams": count,
        "tokens_per_stream": tokens,
        "sequential_tokens_per_s": sequential_tokens / sequential,
        "concurrent_tokens_per_s": sum(generated) / concurrent,
    }
    row["ratio"] = row["concurrent_tokens_per_s"] / row["sequential_tokens_per_s"]
    return row


def _sequence_inputs(token, sequence_id, control):
    return {
        contract.TOKENS: np.array([[token]], np.int32),
        contract.MAX_NEW_TOKENS: np.int32(1),
        contract.TEMPERATURE: np.float32(1.0),
        contract.TOP_K: np.int32(0),
        contract.SEED: np.int64(sequence_id),
        contract.SEQUENCE_ID: np.array([sequence_id], np.uint64),
        contract.SEQUENCE_CONTROL_INPUT: np.array([control], np.uint32),
    }


def unary_sequences(server, model, count=STREAMS, calls=UNARY_CALLS):
    """`count` concurrent server-side sequences × `calls` one-token Predict(generate) calls each."""
    clients = [_client(server) for _ in range(count)]
    latencies = [[] for _ in range(count)]

    def one(index):
        client = clients[index]
        outputs = client.predict(
            model,
            _sequence_inputs(1 + index % 60, 0, contract.SEQUENCE_START),
            signature_name=contract.GENERATE,
        )
        sequence_id = int(outputs[contract.SEQUENCE_ID][0])
        token = int(outputs[contract.TOKENS][0, -1])
        for call in range(calls):
            control = contract.SEQUENCE_END if call == calls - 1 else contract.SEQUENCE_CONTINUE
            begin = time.perf_counter()
            outputs = client.predict(
                model, _sequence_inputs(token, sequence_id, control), signature_name=contract.GENERATE
            )
            latencies[index].append(time.perf_counter() - begin)
            token = int(outputs[contract.TOKENS][0, -1])

    one(0)  # warm-up
    latencies[0].clear()
    wall = timing.all_at_once(one, count)
    for client in clients:
        client.close()
    values = np.asarray([value for per in latencies for value in per]) * 1e3
    return {
        "sequences": count,
        "calls_per_sequence": calls,
        "tokens_per_s": values.size / wall,
        "p50_ms": float(np.percentile(values, 50)),
        "p99_ms": float(np.percentile(values, 99)),
    }


def time_to_first_token(server, model, state_width, samples=TTFT_SAMPLES):
    """p50 of a stream's first piece vs a one-token Predict(generate), same prompt and state."""
    client = _client(server)
    state = np.zeros((state_width,), np.float32)
    predict_inputs = {
        contract.TOKENS: np.array([[5, 6, 7]], np.int32),
        contract.STATE: state[None, :],
        contract.MAX_NEW_TOKENS: np.int32(1),
        contract.TEMPERATURE: np.float32(1.0),
        contract.TOP_K: np.int32(0),
        contract.SEED: np.int64(0),
    }
    stream_times, predict_times = [], []
    for sample in range(samples + 10):  # the first 10 warm up
        begin = time.perf_counter()
        with client.generate_stream(
            model, tokens=[5, 6, 7], state=state, max_new_tokens=STREAM_TOKENS, temperature=1.0
        ) as stream:
            next(iter(stream))
            first = time.perf_counter() - begin
        begin = time.perf_counter()
        client.predict(model, predict_inputs, signature_name=contract.GENERATE)
        one_token = time.perf_counter() - begin
        if sample >= 10:
            stream_times.append(first)
            predict_times.append(one_token)
    client.close()
    row = {
        "samples": samples,
        "stream_first_piece_p50_ms": float(np.percentile(stream_times, 50) * 1e3),
        "one_token_predict_p50_ms": float(np.percentile(predict_times, 50) * 1e3),
    }
    row["ratio"] = row["stream_first_piece_p50_ms"] / row["one_token_predict_p50_ms"]
    return row


def markdown(results):
    """The streaming tables of the serving block (empty if the run had none)."""
    from rnnserve.benchmarks.report import markdown_table

    streaming = results.get("streaming")
    if not streaming:
        return ""
    s, t, d = streaming["streams"], streaming["time_to_first_token"], streaming.get("decoder")
    parts = [
        f"**Streams** ({s['streams']} streamed generations of {s['tokens_per_stream']} sampled tokens; "
        "target: concurrent ≥ 4× one at a time):",
        markdown_table(
            ["read through", "one at a time tok/s", "all at once tok/s", "ratio"],
            [
                [
                    where,
                    f"{row['sequential_tokens_per_s']:,.0f}",
                    f"{row['concurrent_tokens_per_s']:,.0f}",
                    f"{row['ratio']:.2f}×",
                ]
                for where, row in (
                    ("gRPC, the benchmark's client threads", s),
                    ("the engine, in the server's process", d),
                )
                if row
            ],
        ),
        f"**Unary sequences** ({streaming['unary'][0]['sequences']} server-side sequences at once, one token "
        f"per Predict(`generate`) call, {streaming['unary'][0]['calls_per_sequence']} calls each):",
        markdown_table(
            ["--enable_batching", "tokens/s", "p50 ms", "p99 ms"],
            [
                [
                    row["batching"],
                    f"{row['tokens_per_s']:,.0f}",
                    f"{row['p50_ms']:.2f}",
                    f"{row['p99_ms']:.2f}",
                ]
                for row in streaming["unary"]
            ],
        ),
        f"**Time to first token** (p50 of {t['samples']}; target: stream ≤ 1.5× one one-token Predict):",
        markdown_table(
            ["stream's first piece ms", "one-token Predict(generate) ms", "ratio"],
            [
                [
                    f"{t['stream_first_piece_p50_ms']:.2f}",
                    f"{t['one_token_predict_p50_ms']:.2f}",
                    f"{t['ratio']:.2f}×",
                ]
            ],
        ),
    ]
    return "\n\n".join(parts)
