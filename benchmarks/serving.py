"""Serving latency: Predict(`step`) through the embedded server vs a direct call; streaming.

    rnnserve bench serving            # ~1 minute
    rnnserve bench serving --quick

One request is one token of one sequence continuing from a state (B=1,
T=1, the exported main LSTM of `exported.py`), the call a streaming client
makes per token. Contenders:

- direct: the SavedModel's `step` signature called in this process
  (`tf.saved_model.load`), no server;
- server, N clients: `rnnserve serve` in its own process on 127.0.0.1,
  queried over gRPC with TF Serving's own stubs by N client threads of this
  process, each sending its next request when the last one returns;
- the same with `--enable_batching` (concurrent requests merged into one
  run, `max_batch_size` 8, 1 ms timeout).

Each reports p50/p99 latency and requests/s; the server's peak RSS is read
from /proc after its run. Warm-up requests are not timed. Then streaming and
batching across sequences (`streaming.py`): concurrent streams vs one at a
time, one-token calls of concurrent server-side sequences with batching off
and on, and a stream's time to first token.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from rnnserve.benchmarks import machine, streaming, timing
from rnnserve.benchmarks.report import machine_markdown, markdown_table, new_results

NAME = "serving"
MODEL = "lm"
BATCHING = """max_batch_size { value: 8 }
batch_timeout_micros { value: 1000 }
num_batch_threads { value: 2 }
max_enqueued_batches { value: 100 }
"""


def add_arguments(parser):
    parser.add_argument("--quick", action="store_true", help="Fewer requests (< 30 s).")
    parser.add_argument(
        "--requests", type=int, default=None, help="Timed requests per client (default 400, quick 100)."
    )


def _percentiles(latencies_s, wall_s):
    values = np.asarray(latencies_s) * 1e3
    return {
        "p50_ms": float(np.percentile(values, 50)),
        "p99_ms": float(np.percentile(values, 99)),
        "requests_per_s": len(values) / wall_s,
        "requests": len(values),
    }


def _direct(version_dir, state_width, requests):
    import tensorflow as tf

    step = tf.saved_model.load(version_dir).signatures["step"]
    tokens, state = tf.ones((1, 1), tf.int32), tf.zeros((1, state_width))
    for _ in range(20):
        step(tokens=tokens, state=state)
    latencies, started = [], time.perf_counter()
    for _ in range(requests):
        begin = time.perf_counter()
        step(tokens=tokens, state=state)["state"].numpy()
        latencies.append(time.perf_counter() - begin)
    return _percentiles(latencies, time.perf_counter() - started)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    """`rnnserve serve` in a child process, ready when the model is AVAILABLE."""

    def __init__(self, base, batching_file=None):
        from rnnserve.serving.client import PredictionClient

        self.port = _free_port()
        command = [sys.executable, "-m", "rnnserve", "serve", "--port", str(self.port), "--rest_api_port", "0",
                   "--model_name", MODEL, "--model_base_path", base]  # fmt: skip
        if batching_file:
            command += ["--enable_batching", "--batching_parameters_file", batching_file]
        # stderr to a file, not a pipe: nobody reads it while the server runs,
        # and a full pipe would block the server's next log line.
        self.log = tempfile.TemporaryFile("w+")
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=self.log, text=True)
        self.client = PredictionClient(f"127.0.0.1:{self.port}", timeout=10)
        deadline = time.monotonic() + 120
        while True:
            if self.process.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"rnnserve serve exited: {self.log.read()[-2000:]}")
            try:
                if any(status.state == "AVAILABLE" for status in self.client.status(MODEL)):
                    return
            except Exception:  # not listening yet
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("rnnserve serve did not make the model AVAILABLE within 120 s")
            time.sleep(0.2)

    def peak_rss_mib(self):
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return None

    def stop(self):
        self.client.close()
        self.process.terminate()
        self.process.wait(timeout=60)
        self.log.close()


def _through_server(server, state_width, clients, requests):
    """`clients` threads × `requests` Predict(step) calls each over raw gRPC stubs."""
    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from rnnserve.serving.tensors import to_tensor_proto

    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = "step"
    to_tensor_proto(np.ones((1, 1), np.int32), out=request.inputs["tokens"])
    to_tensor_proto(np.zeros((1, state_width), np.float32), out=request.inputs["state"])
    channels = [grpc.insecure_channel(f"127.0.0.1:{server.port}") for _ in range(clients)]
    stubs = [prediction_service_pb2_grpc.PredictionServiceStub(channel) for channel in channels]
    for stub in stubs:
        for _ in range(20):
            stub.Predict(request, timeout=30)
    latencies = [[] for _ in range(clients)]

    def client(index):
        for _ in range(requests):
            begin = time.perf_counter()
            stubs[index].Predict(request, timeout=30)
            latencies[index].append(time.perf_counter() - begin)

    wall = timing.all_at_once(client, clients)
    for channel in channels:
        channel.close()
    return _percentiles([value for per_client in latencies for value in per_client], wall)


def run(args):
    """Exports the model, measures the direct call and each server setting."""
    import tensorflow as tf

    from rnnserve.benchmarks import exported

    requests = args.requests or (100 if args.quick else 400)
    results = new_results(NAME, rows=[])
    started = time.time()
    with tempfile.TemporaryDirectory() as directory:
        base = os.path.join(directory, MODEL)
        version_dir = exported.export(base)
        width = (
            tf.saved_model.load(version_dir)
            .signatures["step"]
            .structured_input_signature[1]["state"]
            .shape[-1]
        )
        print("serving: direct signature call …", flush=True)
        results["rows"].append(
            {"setting": "direct signature call", "clients": 1, **_direct(version_dir, width, requests)}
        )
        batching_file = Path(directory) / "batching.config"
        batching_file.write_text(BATCHING)
        results["streaming"] = {"unary": []}
        scale = 10 if args.quick else 1
        for batching in (False, True):
            server = _Server(base, str(batching_file) if batching else None)
            try:
                for clients in (1, 8):
                    setting = "server" + (", batching" if batching else "")
                    print(f"serving: {setting}, {clients} client(s) …", flush=True)
                    measured = _through_server(server, width, clients, requests)
                    results["rows"].append({"setting": setting, "clients": clients, **measured})
                print(f"serving: {streaming.STREAMS} unary sequences, {setting} …", flush=True)
                measured = streaming.unary_sequences(server, MODEL, calls=streaming.UNARY_CALLS // scale)
                results["streaming"]["unary"].append({"batching": "on" if batching else "off", **measured})
                if not batching:
                    print(f"serving: {streaming.STREAMS} streams, one at a time and at once …", flush=True)
                    results["streaming"]["streams"] = streaming.streams(
                        server, MODEL, tokens=streaming.STREAM_TOKENS // scale
                    )
                    print(
                        f"serving: {streaming.STREAMS} streams read from the engine in this process …",
                        flush=True,
                    )
                    results["streaming"]["decoder"] = streaming.decoder_streams(
                        base, MODEL, tokens=streaming.STREAM_TOKENS // scale
                    )
                    print("serving: time to first token …", flush=True)
                    results["streaming"]["time_to_first_token"] = streaming.time_to_first_token(
                        server, MODEL, width, samples=streaming.TTFT_SAMPLES // scale
                    )
                results["rows"][-1]["server_peak_rss_mib"] = server.peak_rss_mib()
            finally:
                server.stop()
    direct = results["rows"][0]["p50_ms"]
    for row in results["rows"]:
        row["added_p50_ms"] = row["p50_ms"] - direct
    results["machine"]["busy_after"] = machine.busy_fraction()
    results["seconds"] = round(time.time() - started, 1)
    return results


def markdown(results):
    """The serving block of BENCHMARKS.md."""
    header = [
        "setting",
        "clients",
        "p50 ms",
        "p99 ms",
        "p50 − direct p50 (ms)",
        "requests/s",
        "server peak RSS (MiB)",
    ]
    rows = [
        [
            row["setting"],
            row["clients"],
            f"{row['p50_ms']:.2f}",
            f"{row['p99_ms']:.2f}",
            f"{row['added_p50_ms']:+.2f}",
            f"{row['requests_per_s']:,.0f}",
            f"{row['server_peak_rss_mib']:.0f}" if row.get("server_peak_rss_mib") else "",
        ]
        for row in results["rows"]
    ]
    parts = [
        machine_markdown(results["machine"]),
        f"Command: `{results['command']}` ({results['seconds']} s); Predict(`step`), B=1, T=1, "
        f"{results['rows'][0]['requests']} timed requests per client.",
        markdown_table(header, rows),
        streaming.markdown(results),
    ]
    return "\n\n".join(part for part in parts if part)


def chart(results, path):
    """p50 and p99 latency per setting, and requests/s."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{row['setting']}\n{row['clients']} client(s)" for row in results["rows"]]
    figure, (latency, throughput) = plt.subplots(1, 2, figsize=(12, 4.5), constrained_layout=True)
    positions = np.arange(len(labels))
    latency.bar(positions - 0.2, [row["p50_ms"] for row in results["rows"]], 0.4, label="p50")
    latency.bar(positions + 0.2, [row["p99_ms"] for row in results["rows"]], 0.4, label="p99")
    latency.set_ylabel("latency (ms)")
    latency.set_title("Predict(step), one token of one sequence")
    throughput.bar(positions, [row["requests_per_s"] for row in results["rows"]], 0.5, color="tab:green")
    throughput.set_ylabel("requests/s")
    throughput.set_title("Throughput")
    for axis in (latency, throughput):
        axis.set_xticks(positions, labels, fontsize=8)
        axis.grid(axis="y", alpha=0.3)
    latency.legend()
    figure.savefig(path, dpi=110)
    plt.close(figure)
