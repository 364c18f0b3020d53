"""`ModelServer`: the embedded TF-Serving-compatible server, assembled.

Loads the configured models (waiting for the first versions, like
`tensorflow_model_server`), then serves gRPC on `--port` and REST (and
Prometheus metrics) on `--rest_api_port`, while the manager polls for new
versions. `stop()` — also run on SIGTERM/SIGINT by `serve_forever()` —
marks the health service NOT_SERVING, stops accepting calls, lets in-flight
requests finish (up to `grace` seconds), then unloads every model.

Example:

```python
server = ModelServer(ServerOptions.for_model("charlm", "/models/charlm", port=0, rest_api_port=0))
server.start()
server.grpc_port        # the port picked for port=0
# 41377
server.stop()
```
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import socket
import threading

from rnnserve.serving.batching import Batcher
from rnnserve.serving.errors import ServingError
from rnnserve.serving.grpc_api import GENERATION_SERVICE, MODEL_SERVICE, PREDICTION_SERVICE, build_grpc_server
from rnnserve.serving.manager import ModelManager
from rnnserve.serving.metrics import Metrics
from rnnserve.serving.rest_api import build_rest_server
from rnnserve.serving.sequences import SequenceStore
from rnnserve.serving.server_core import ServerCore

log = logging.getLogger("rnnserve.serving")

SIGNAL_CHECK_SECONDS = 0.2  # the longest a SIGTERM/SIGINT waits for `serve_forever` to see it


def _check_port_free(host: str, port: int, api: str, flag: str) -> None:
    """Raises UNAVAILABLE naming `flag` when something already listens on host:port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
        try:
            probe.bind((host, port))
        except OSError as error:
            raise ServingError(
                "UNAVAILABLE",
                f"cannot bind {api} to {host}:{port} ({error.strerror}): is the port in use? Pass another {flag}.",
            ) from None


class ModelServer:
    """gRPC + REST over one ModelManager.

    Args:
        options: a `serving.config.ServerOptions`.

    Attributes (after `start()`):
        grpc_port: the bound gRPC TCP port, or None when gRPC is on a UNIX socket only.
        rest_port: the bound REST port, or None when REST is off.
        core: the `ServerCore` both APIs use.
        sequences: the `SequenceStore` of server-side sequences.
    """

    def __init__(self, options):
        self.options = options
        self.metrics = Metrics()
        self.manager = ModelManager(options, self.metrics)
        self.sequences = SequenceStore(
            options.max_sequence_number, options.sequence_idle_timeout_seconds, self.metrics
        )
        self.batcher = Batcher(options.batching, self.metrics) if options.batching is not None else None
        self.core = ServerCore(
            self.manager,
            self.metrics,
            self.batcher,
            max_tensor_bytes=options.max_request_bytes,
            method_name_check=options.method_name_check,
            sequences=self.sequences,
        )
        # A version a sequence or a stream runs on stays loaded.
        self.manager.keep_loaded = lambda name, version: (
            self.sequences.pinned(name, version) or self.core.decoder.pinned(name, version)
        )
        self.grpc_port: int | None = None
        self.rest_port: int | None = None
        self._grpc = self._health = self._rest = self._rest_thread = None
        self._stopped = threading.Event()

    def start(self) -> ModelServer:
        """Binds both ports, loads the models and starts serving; returns self.

        The ports are bound first, so a busy port fails at once, before any
        model loads.

        Raises:
            ServingError: a port cannot be bound (UNAVAILABLE) or a configured
                model cannot be served.
        """
        options = self.options
        if options.rest_api_port and options.rest_api_port == options.port:
            log.error(  # TF Serving's server.cc: not fatal, REST is skipped
                "server_options.http_port cannot be same as grpc_port. Please use a different port for "
                "HTTP/REST API. Skipped exporting HTTP/REST API."
            )
            options = self.options = dataclasses.replace(options, rest_api_port=None)
        if options.port:
            _check_port_free(options.host, options.port, "gRPC", "--port")
        if options.rest_api_port:
            _check_port_free(options.host, options.rest_api_port, "REST", "--rest_api_port")
        try:
            self._grpc, self.grpc_port, self._health = build_grpc_server(self.core, options)
        except OSError as error:
            raise ServingError("UNAVAILABLE", f"{error}: is the port in use? Pass another --port.") from None
        if options.rest_api_port is not None:
            try:
                self._rest = build_rest_server(self.core, options, self.metrics)
            except OSError as error:
                self._close_unstarted()
                raise ServingError(
                    "UNAVAILABLE",
                    f"cannot bind REST to {options.host}:{options.rest_api_port} ({error.strerror or error}): "
                    "is the port in use? Pass another --rest_api_port.",
                ) from None
            self.rest_port = self._rest.server_address[1]
        try:
            self.manager.apply_config(options.model_config, startup=True)
        except ServingError:
            self._close_unstarted()
            self.manager.stop()
            raise
        self._grpc.start()
        if self._rest is not None:
            self._rest_thread = threading.Thread(
                target=self._rest.serve_forever, name="rnnserve-rest", daemon=True
            )
            self._rest_thread.start()
        self.manager.start()
        self.sequences.start()
        return self

    def _close_unstarted(self) -> None:
        """Releases the ports of a server that never started."""
        if self._grpc is not None:
            self._grpc.stop(None)
        if self._rest is not None:
            self._rest.server_close()
        self._grpc = self._rest = self._health = None

    def stop(self, grace: float = 30.0) -> None:
        """Graceful shutdown: refuse new calls, give in-flight ones `grace` s to finish, unload models.

        Calls still running after `grace` are cancelled (gRPC) or their
        connections closed (REST); keep-alive REST connections end too.
        """
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self._health is not None:
            self._health.enter_graceful_shutdown()
        grpc_stopped = self._grpc.stop(grace) if self._grpc is not None else None
        log.info("Shutting down: new calls are refused; calls in flight have %g s to finish", grace)
        if self._rest is not None:
            self._rest.close(grace)  # runs alongside gRPC's grace period
        if grpc_stopped is not None:
            grpc_stopped.wait()
        self.core.decoder.close()  # streams still running end as cancelled
        if self.batcher is not None:
            self.batcher.close()
        self.sequences.stop()
        self.manager.stop()

    def serve_forever(self, announce=print) -> None:
        """Serves until SIGTERM or SIGINT, then stops gracefully."""
        wake = threading.Event()

        def on_signal(signum, _frame):
            log.info("Received signal %d, shutting down", signum)
            wake.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            host = self.options.host
            services = f"({PREDICTION_SERVICE}, {MODEL_SERVICE}, {GENERATION_SERVICE}, grpc.health.v1.Health"
            services += ", tensorflow.ProfilerService)" if self.options.enable_profiler else ")"
            tls = " with TLS" if self.options.ssl is not None else ""
            if self.grpc_port is not None:
                announce(f"Serving gRPC on {host}:{self.grpc_port} {services}{tls}")
            if self.options.grpc_socket_path:
                announce(f"Serving gRPC on unix:{self.options.grpc_socket_path} {services}{tls}")
            if self.rest_port is not None:
                announce(f"Serving REST on http://{host}:{self.rest_port}/v1/models/")
            # A timed wait: the kernel may deliver the signal to any thread,
            # and then only the main thread's next bytecode runs `on_signal`;
            # an untimed wait would never reach it.
            while not wake.wait(SIGNAL_CHECK_SECONDS):
                pass
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            announce("Server stopped.")
