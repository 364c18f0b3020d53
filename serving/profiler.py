"""`tensorflow.ProfilerService` on the server's own gRPC port(s) (`--enable_profiler`).

TensorBoard's "Capture profile" and
`tf.profiler.experimental.client.trace("grpc://HOST:PORT", logdir, ms)` call
`Profile`: a TensorFlow profiler session records the whole process (the
served models' runs included) for `duration_ms`, and the trace (an XSpace)
is written where TensorFlow's own service writes it,
`<repository_root>/<session_id>/<host_name with ':' -> '_'>.xplane.pb`, or
returned in the reply when `emit_xspace` is set. `Terminate` ends a running
`Profile` early. Nothing else listens: the service is a generic handler on
the server that already carries PredictionService and ModelService.

One profile runs at a time (TensorFlow allows one profiler session per
process; a second call is UNAVAILABLE). `Monitor` and the continuous
profiling calls answer UNIMPLEMENTED, and a request's `ProfileOptions` are
not applied (TensorFlow's defaults are used).

The request and reply messages are declared here by field number
(`tsl/profiler/protobuf/profiler_service.proto`), because the TensorFlow
wheel ships no Python module for them; only the fields used are declared.

Example:

```python
server.add_generic_rpc_handlers((ProfilerHandler(),))
```
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import socket
import tempfile
import threading

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

log = logging.getLogger("rnnserve.serving")

SERVICE = "tensorflow.ProfilerService"
_PREFIX = f"/{SERVICE}/"
_FIELD = descriptor_pb2.FieldDescriptorProto
# message -> [(field, number, type)], numbers from profiler_service.proto
_MESSAGES = {
    "ProfileRequest": [
        ("duration_ms", 1, _FIELD.TYPE_UINT64),
        ("max_events", 2, _FIELD.TYPE_UINT64),
        ("repository_root", 5, _FIELD.TYPE_STRING),
        ("session_id", 6, _FIELD.TYPE_STRING),
        ("host_name", 7, _FIELD.TYPE_STRING),
        ("emit_xspace", 9, _FIELD.TYPE_BOOL),
    ],
    "ProfileResponse": [("empty_trace", 7, _FIELD.TYPE_BOOL), ("xspace", 8, _FIELD.TYPE_BYTES)],
    "TerminateRequest": [("session_id", 1, _FIELD.TYPE_STRING)],
}


def _message_classes() -> dict:
    file_proto = descriptor_pb2.FileDescriptorProto(
        name="rnnserve/profiler_service_subset.proto", package="rnnserve.profiler", syntax="proto3"
    )
    for name, fields in _MESSAGES.items():
        message = file_proto.message_type.add(name=name)
        for field, number, kind in fields:
            message.field.add(name=field, number=number, type=kind, label=_FIELD.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file_proto)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"rnnserve.profiler.{name}"))
        for name in _MESSAGES
    }


_CLASSES = _message_classes()
ProfileRequest = _CLASSES["ProfileRequest"]
ProfileResponse = _CLASSES["ProfileResponse"]
TerminateRequest = _CLASSES["TerminateRequest"]


def _record(duration_ms: int, stop: threading.Event) -> bytes:
    """Runs a profiler session for `duration_ms` (or until `stop`); returns the XSpace bytes."""
    from tensorflow.python.profiler.internal import _pywrap_profiler

    scratch = tempfile.mkdtemp(prefix="rnnserve-profile-")
    try:
        session = _pywrap_profiler.ProfilerSession()
        session.start(scratch, {})  # {}: TensorFlow's default tracer levels
        stop.wait(max(duration_ms, 1) / 1000.0)
        session.export_to_tb()  # <scratch>/plugins/profile/<run>/<host>.xplane.pb
        produced = glob.glob(os.path.join(scratch, "plugins", "profile", "*", "*.xplane.pb"))
        if not produced:
            return b""
        with open(produced[0], "rb") as handle:
            return handle.read()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


class ProfilerHandler(grpc.GenericRpcHandler):
    """Serves `tensorflow.ProfilerService` (Profile, Terminate) on the server it is added to."""

    def __init__(self):
        self._busy = threading.Lock()
        self._stops: dict[str, threading.Event] = {}

    def _profile(self, request, context):
        if not self._busy.acquire(blocking=False):
            context.abort(grpc.StatusCode.UNAVAILABLE, "Another profiling session is active.")
        stop = self._stops.setdefault(request.session_id, threading.Event())
        try:
            log.info("Profiling for %d ms (session %s)", request.duration_ms, request.session_id or "-")
            xspace = _record(request.duration_ms, stop)
        finally:
            self._stops.pop(request.session_id, None)
            self._busy.release()
        response = ProfileResponse(empty_trace=not xspace)
        if request.emit_xspace:
            response.xspace = xspace
        elif xspace:
            if not request.repository_root:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "ProfileRequest has no repository_root.")
            directory = os.path.join(request.repository_root, request.session_id)
            os.makedirs(directory, exist_ok=True)
            host = (request.host_name or socket.gethostname()).replace(":", "_")
            with open(os.path.join(directory, f"{host}.xplane.pb"), "wb") as handle:
                handle.write(xspace)
        return response

    def _terminate(self, request, context):
        stop = self._stops.get(request.session_id)
        if stop is not None:
            stop.set()
        return b""  # TerminateResponse has no fields

    @staticmethod
    def _unimplemented(request, context):
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not implemented")

    def service(self, handler_call_details):
        """The handler for a `/tensorflow.ProfilerService/...` method, else None."""
        method = handler_call_details.method
        if method == _PREFIX + "Profile":
            return grpc.unary_unary_rpc_method_handler(
                self._profile,
                request_deserializer=ProfileRequest.FromString,
                response_serializer=ProfileResponse.SerializeToString,
            )
        if method == _PREFIX + "Terminate":
            return grpc.unary_unary_rpc_method_handler(
                self._terminate, request_deserializer=TerminateRequest.FromString
            )
        if method.startswith(_PREFIX):
            return grpc.unary_unary_rpc_method_handler(self._unimplemented)
        return None
