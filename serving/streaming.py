"""Streaming generation on the wire: requests in, pieces and totals out, for gRPC and REST.

The gRPC `rnnserve.GenerationService/Generate` (`serving.grpc_api`) and the
REST route `POST /v1/models/NAME[...]:generate_stream` (`serving.rest_api`)
take the same request, `rnnserve.GenerateRequest` (generation.proto; as JSON
on REST, its field names without `model_spec`, which the URL gives), and
answer the same stream: one message per piece of text as the engine
(`ServerCore.generate_stream`) samples it, then one with the totals. On REST
these are Server-Sent Events:

    data: {"text": "he", "token_ids": [8, 5]}

    event: done
    data: {"finish_reason": "length", "generated_tokens": 2, "sequence_id": 0,
           "state": [...], "last_token": 5, "model_spec": {"name": "charlm", "version": 1}}

and an error after the stream has begun is `event: error` with
`data: {"error": "...", "code": "INTERNAL"}` (before it begins, the usual
JSON error answer with its HTTP status).

Fields left out take the proto's defaults (temperature 0 = greedy, top_k 0,
seed 0), except `max_new_tokens`: 0 or left out means 16.

Example:

```python
request = request_from_json(b'{"prompt": "the ", "max_new_tokens": 8}')
stream = core.generate_stream(model_spec(request), stream_params(request), entrypoint="REST")
for event in sse_events(stream):      # bytes, one event each
    ...
```
"""

from __future__ import annotations

import json
import logging

import numpy as np
from google.protobuf import json_format
from tensorflow_serving.apis import model_pb2

from rnnserve.serving import json_tensors, protos
from rnnserve.serving.decoding import StreamParams
from rnnserve.serving.errors import ServingError, truncate

log = logging.getLogger("rnnserve.serving")

DEFAULT_MAX_NEW_TOKENS = 16  # what an unset (0) max_new_tokens means
EVENT_STREAM = "text/event-stream"


def request_from_json(body: bytes, spec: model_pb2.ModelSpec | None = None) -> protos.GenerateRequest:
    """A GenerateRequest from a REST body (a JSON object of its fields; the model is `spec`, from the URL).

    Raises:
        ServingError: INVALID_ARGUMENT naming what does not parse (not JSON, an
            unknown field, a value of the wrong type, `model_spec` in the body).
    """
    doc = json_tensors.parse_json(body)
    if "model_spec" in doc or "modelSpec" in doc:
        raise ServingError(
            "INVALID_ARGUMENT", "The model is named by the URL: leave model_spec out of the request body."
        )
    request = protos.GenerateRequest()
    try:
        json_format.ParseDict(doc, request, descriptor_pool=protos.POOL)
    except json_format.ParseError as error:
        raise ServingError(
            "INVALID_ARGUMENT", truncate(f"Invalid generate_stream request: {error}")
        ) from None
    if spec is not None:
        request.model_spec.ParseFromString(spec.SerializeToString())
    return request


def model_spec(request: protos.GenerateRequest) -> model_pb2.ModelSpec | None:
    """The request's ModelSpec as TF Serving's message (converted through bytes), None if it has none."""
    if not request.HasField("model_spec"):
        return None
    return model_pb2.ModelSpec.FromString(request.model_spec.SerializeToString())


def stream_params(request: protos.GenerateRequest) -> StreamParams:
    """The engine's StreamParams from a GenerateRequest (empty prompt / tokens / state = not given)."""
    return StreamParams(
        prompt=request.prompt if request.prompt else None,
        tokens=list(request.tokens) if request.tokens else None,
        state=np.asarray(request.state, np.float32) if request.state else None,  # (S,)
        max_new_tokens=request.max_new_tokens or DEFAULT_MAX_NEW_TOKENS,
        temperature=request.temperature,
        top_k=request.top_k,
        seed=request.seed,
        stop=tuple(request.stop),
        sequence_id=request.sequence_id,
        sequence_control=request.sequence_control_input,
    )


def piece_response(piece) -> protos.GenerateResponse:
    """The GenerateResponse of one engine Piece."""
    return protos.GenerateResponse(text=piece.text, token_ids=piece.token_ids)


def end_response(end) -> protos.GenerateResponse:
    """The final GenerateResponse (done = true) of an engine StreamEnd."""
    response = protos.GenerateResponse(
        done=True,
        finish_reason=end.finish_reason,
        generated_tokens=end.generated_tokens,
        sequence_id=end.sequence_id,
        last_token=end.last_token,
    )
    if end.state is not None:
        response.state.extend(np.asarray(end.state, np.float32).ravel().tolist())
    response.model_spec.name = end.model_name
    response.model_spec.version.value = end.version
    return response


def piece_json(piece) -> dict:
    """The `data` of a piece's event: {"text", "token_ids"}."""
    return {"text": piece.text, "token_ids": [int(token) for token in piece.token_ids]}


def end_json(end) -> dict:
    """The `data` of the `done` event: the totals (state [] on a server-side sequence)."""
    state = [] if end.state is None else np.asarray(end.state, np.float32).ravel().tolist()
    return {
        "finish_reason": end.finish_reason,
        "generated_tokens": int(end.generated_tokens),
        "sequence_id": int(end.sequence_id),
        "state": state,
        "last_token": int(end.last_token),
        "model_spec": {"name": end.model_name, "version": int(end.version)},
    }


def sse_event(data: dict, event: str | None = None) -> bytes:
    """One Server-Sent Event: optional `event:` line, one `data:` line of JSON, a blank line."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))  # one line: no raw newlines
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {text}\n\n".encode()


def sse_events(stream):
    """The Server-Sent Events of an engine Stream, as bytes; closing the generator cancels the stream."""
    with stream:
        try:
            for piece in stream.coalesced():
                yield sse_event(piece_json(piece))
        except ServingError as error:
            yield sse_event({"error": truncate(error.message), "code": error.code}, "error")
            return
        except Exception as error:  # a bug: report it, keep serving
            log.exception("generate_stream failed")
            yield sse_event({"error": truncate(f"Internal error: {error}"), "code": "INTERNAL"}, "error")
            return
        yield sse_event(end_json(stream.end), "done")
