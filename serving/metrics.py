"""Prometheus metrics with TF Serving's names, served at `/monitoring/prometheus/metrics`.

TF Serving exports TensorFlow's monitoring metrics with every non
`[a-zA-Z0-9_]` character turned into `:`; these are the ones this server
records, under the same names and labels:

| metric                                         | kind      | labels                              |
|------------------------------------------------|-----------|-------------------------------------|
| `:tensorflow:serving:request_count`            | counter   | model_name, status                  |
| `:tensorflow:serving:request_latency`          | histogram | model_name, API, entrypoint, status |
| `:tensorflow:serving:runtime_latency`          | histogram | model_name, API, runtime            |
| `:tensorflow:cc:saved_model:load_attempt_count`| counter   | model_path, status                  |
| `:tensorflow:cc:saved_model:load_latency`      | counter   | model_path                          |
| `:tensorflow:serving:model_warmup_latency`     | histogram | model_path, status                  |
| `:tensorflow:serving:batching_session:processed_batch_size` | histogram | thread_pool_name    |
| `:rnnserve:serving:live_sequences` (ours)      | gauge     | model_name                          |
| `:rnnserve:generated_tokens_total` (ours)      | counter   | model_name                          |
| `:rnnserve:streams_total` (ours)               | counter   | model_name, finish_reason           |
| `:rnnserve:active_streams` (ours)              | gauge     | model_name                          |
| `:rnnserve:decode_batch_size` (ours)           | histogram | (none)                              |

Latencies are microseconds; histogram buckets are TF Serving's
(exponential, scale 10, power 1.8, 33 buckets). `live_sequences` counts
the server-side sequences (`serving.sequences`) each model holds; TF
Serving has no such thing. The decoder's metrics (`serving.decoding`)
count every token it samples (streams and batched one-token `generate`
calls), finished streams by how they ended, the streams running now, and
the rows of each shared decode step. The values live in
prometheus-client metrics; the page is prometheus-client's text exposition,
except that counters are declared `untyped` so that their samples keep TF
Serving's names (prometheus-client would rename them `..._total`), and the
OpenMetrics `_created` samples are left out. Our own counters (`:rnnserve:`)
keep Prometheus's usual `_total` names and `counter` type.

Example:

>>> metrics = Metrics()
>>> metrics.request_count.labels(model_name="charlm", status="OK").inc()
>>> b':tensorflow:serving:request_count{model_name="charlm",status="OK"} 1.0' in metrics.page()
True
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric

LATENCY_BUCKETS = tuple(10 * 1.8**i for i in range(32)) + (float("inf"),)
BATCH_BUCKETS = tuple(2.0**i for i in range(15)) + (float("inf"),)
OURS = ":rnnserve:"  # the prefix of the metrics TF Serving does not have


class _TFServingNames:
    """Collects an inner registry with TF Serving's sample names.

    TF Serving's counters become `untyped` families whose samples drop the
    `_total` suffix (ours, `:rnnserve:...`, stay counters); the
    OpenMetrics-only `_created` samples are left out.
    """

    def __init__(self, inner: CollectorRegistry):
        self._inner = inner

    def collect(self):
        for family in self._inner.collect():
            counter = family.type == "counter" and not family.name.startswith(OURS)
            metric = Metric(family.name, family.documentation, "unknown" if counter else family.type)
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue
                name = family.name if counter else sample.name
                metric.add_sample(name, sample.labels, sample.value)
            yield metric


class Metrics:
    """The server's metrics, in a private registry (one per server)."""

    def __init__(self):
        self._values = CollectorRegistry()  # where the metrics live
        self.registry = CollectorRegistry()  # what the page shows: _values, renamed
        self.registry.register(_TFServingNames(self._values))

        def counter(name, doc, labels):
            return Counter(name, doc, labels, registry=self._values)

        def histogram(name, doc, labels, buckets=LATENCY_BUCKETS):
            return Histogram(name, doc, labels, buckets=buckets, registry=self._values)

        self.request_count = counter(
            ":tensorflow:serving:request_count", "The total number of requests.", ["model_name", "status"]
        )
        self.load_attempt_count = counter(
            ":tensorflow:cc:saved_model:load_attempt_count",
            "The number of times a SavedModel was successfully loaded.",
            ["model_path", "status"],
        )
        self.load_latency = counter(
            ":tensorflow:cc:saved_model:load_latency",
            "Latency in microseconds for SavedModels that were successfully loaded.",
            ["model_path"],
        )
        self.request_latency = histogram(
            ":tensorflow:serving:request_latency",
            "Distribution of wall time (in microseconds) for Tensorflow Serving request.",
            ["model_name", "API", "entrypoint", "status"],
        )
        self.runtime_latency = histogram(
            ":tensorflow:serving:runtime_latency",
            "Distribution of wall time (in microseconds) for Tensorflow runtime.",
            ["model_name", "API", "runtime"],
        )
        self.warmup_latency = histogram(
            ":tensorflow:serving:model_warmup_latency",
            "Distribution of wall time (in microseconds) for warming up the model.",
            ["model_path", "status"],
        )
        self.processed_batch_size = histogram(
            ":tensorflow:serving:batching_session:processed_batch_size",
            "Tracks the batch size distribution on processing.",
            ["thread_pool_name"],
            buckets=BATCH_BUCKETS,
        )
        self.live_sequences = Gauge(
            ":rnnserve:serving:live_sequences",
            "The number of live server-side sequences.",
            ["model_name"],
            registry=self._values,
        )
        self.generated_tokens = counter(
            ":rnnserve:generated_tokens", "Tokens sampled by the decoder.", ["model_name"]
        )
        self.streams = counter(
            ":rnnserve:streams", "Finished streaming generations.", ["model_name", "finish_reason"]
        )
        self.active_streams = Gauge(
            ":rnnserve:active_streams",
            "Streaming generations running now.",
            ["model_name"],
            registry=self._values,
        )
        self.decode_batch_size = Histogram(
            ":rnnserve:decode_batch_size",
            "Rows of each batched decode step.",
            buckets=BATCH_BUCKETS,
            registry=self._values,
        )

    def record_request(self, model: str, api: str, entrypoint: str, status: str, seconds: float) -> None:
        """Counts one request and its latency, as TF Serving's prediction service does."""
        self.request_count.labels(model_name=model, status=status).inc()
        self.request_latency.labels(model_name=model, API=api, entrypoint=entrypoint, status=status).observe(
            seconds * 1e6
        )

    def page(self) -> bytes:
        """The Prometheus text page."""
        return generate_latest(self.registry)
