"""serving: a TensorFlow-Serving-compatible server, its clients and CLI.

Like TF Serving this package knows only SavedModels on disk; it imports
nothing from `models/` or `training/`. One concept per module; a request
goes front end -> `server_core` -> `servable_inference` -> `servable`:

| module                 | what it holds |
|------------------------|---------------|
| `server`               | `ModelServer`: gRPC + REST assembled, graceful SIGTERM |
| `flags`                | `tensorflow_model_server`'s command line, flag for flag, in one table |
| `config`, `config_protos` | ServerOptions from the flags; TF Serving's text-proto config files |
| `manager`, `version_source` | version polling, policies, labels, load (with retries) / warmup / unload |
| `server_core`          | `ServerCore`: a request's ModelSpec -> a leased version, metrics, metadata, status |
| `servable_inference`   | the four inference APIs (Predict, Classify, Regress, MultiInference) run on one servable |
| `classify_regress`     | Classify / Regress signatures, their tf.Example input and result protos |
| `servable`, `warmup`   | one loaded SavedModel version; replaying its warmup file |
| `batching`             | merging concurrent Predict calls |
| `sequences`, `sequence_predict` | server-side sequences (OVMS's `sequence_id` / `sequence_control_input`, fork, resume): kept state, limits, idle reaping, version pins; Predict on one |
| `grpc_api`, `rest_api` | the two front ends |
| `rest_server`, `http_bodies` | the REST API's HTTP server: workers, keep-alive, deadlines, graceful close, CORS; chunked / gzip bodies |
| `profiler`             | `tensorflow.ProfilerService` on the gRPC port |
| `errors`               | TF Serving's status codes, messages and HTTP map; TensorFlow errors as ServingErrors |
| `tensors`, `json_tensors`, `json_examples` | numpy <-> TensorProto / REST JSON |
| `metrics`              | Prometheus metrics with TF Serving's names |
| `client`, `rest_client`, `session` | client library (numpy + grpcio + `protos`; no TensorFlow) |
| `protos`               | TF Serving's API messages and stubs without TensorFlow, in a private descriptor pool |
| `cli`, `cli_client`    | `rnnserve serve / predict / status / metadata / generate` |

See docs/serving.md.
"""
