"""What the clients return: plain Python views of TF Serving's response protos, and streams.

Both `PredictionClient` (gRPC) and `RestClient` build these from the same
protos (`serving.protos`, no TensorFlow needed) (the REST client parses the JSON back into them), so code written
against one works against the other. A streamed generation is a
`GenerationStream` of `StreamPiece`s ending in a `StreamSummary`, over either.

Example:

```python
metadata = client.metadata("charlm")
metadata.signatures["step"].inputs["state"]
# TensorInfo(dtype=dtype('float32'), shape=(None, 1024))
```
"""

from __future__ import annotations

import dataclasses

import numpy as np

from rnnserve.serving import protos, tensors
from rnnserve.serving.errors import CODES, ServingError


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """One signature input or output: numpy dtype (object = string) and shape (None = any size)."""

    dtype: np.dtype
    shape: tuple | None


@dataclasses.dataclass(frozen=True)
class SignatureInfo:
    """A SignatureDef: its method name and its inputs/outputs by alias."""

    method_name: str
    inputs: dict
    outputs: dict


@dataclasses.dataclass(frozen=True)
class ModelMetadata:
    """GetModelMetadata: the answering version and its signatures by name."""

    name: str
    version: int
    signatures: dict

    @classmethod
    def from_protos(cls, model_spec, signature_map) -> ModelMetadata:
        """From a ModelSpec and a SignatureDefMap."""

        def info(tensor_info):
            shape = tensors.shape_of(tensor_info.tensor_shape)
            try:
                dtype = tensors.numpy_dtype(tensor_info.dtype)
            except tensors.TensorError:
                dtype = None
            return TensorInfo(dtype, None if shape is None else tuple(None if d < 0 else d for d in shape))

        signatures = {
            name: SignatureInfo(
                signature.method_name,
                {alias: info(t) for alias, t in signature.inputs.items()},
                {alias: info(t) for alias, t in signature.outputs.items()},
            )
            for name, signature in signature_map.signature_def.items()
        }
        return cls(model_spec.name, model_spec.version.value, signatures)

    @classmethod
    def from_response(cls, response) -> ModelMetadata:
        """From a GetModelMetadataResponse whose `signature_def` entry packs a SignatureDefMap."""
        signature_map = protos.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_map)
        return cls.from_protos(response.model_spec, signature_map)


@dataclasses.dataclass(frozen=True)
class VersionStatus:
    """One entry of GetModelStatus: version, state name and its status."""

    version: int
    state: str
    error_code: str
    error_message: str


def statuses_from_response(response) -> list[VersionStatus]:
    """The versions of a GetModelStatusResponse, in the server's order."""
    return [
        VersionStatus(
            entry.version,
            protos.ModelVersionStatus.State.Name(entry.state),
            CODES[entry.status.error_code] if 0 <= entry.status.error_code < len(CODES) else "UNKNOWN",
            entry.status.error_message,
        )
        for entry in response.model_version_status
    ]


class Outputs(dict):
    """Predict outputs (alias -> numpy array) plus the model, version and signature that answered.

    `version` is None when the server did not say (REST predict replies carry
    no model spec unless the request named a version).
    """

    def __init__(self, arrays: dict, model: str, version: int | None, signature_name: str):
        super().__init__(arrays)
        self.model, self.version, self.signature_name = model, version, signature_name


# --- streaming generation (rnnserve.GenerationService and :generate_stream) ---


@dataclasses.dataclass(frozen=True)
class StreamPiece:
    """One piece of a streamed generation: its text and the token ids sampled for it.

    `text` may be "" while the server holds back what could begin a stop
    string; the held text comes with a later piece.
    """

    text: str
    token_ids: list


@dataclasses.dataclass(frozen=True)
class StreamSummary:
    """The totals of a finished streamed generation.

    Attributes:
        finish_reason: "length", "stop" or "cancelled".
        generated_tokens: tokens sampled (including one that completed a stop string).
        sequence_id: the server-side sequence (the new id after a start or fork); 0 without one.
        state: (S,) float32 state to continue from (client-held mode), None on a server-side sequence.
        last_token: the last sampled token, the next call's first input.
        model / version: the model and version that answered.
    """

    finish_reason: str
    generated_tokens: int
    sequence_id: int
    state: np.ndarray | None
    last_token: int
    model: str
    version: int


class GenerationStream:
    """A streamed generation: iterate for `StreamPiece`s; `end` is the `StreamSummary` after the last one.

    Both `PredictionClient.generate_stream` and `RestClient.generate_stream`
    return one. Iteration blocks for the next piece and raises `ServingError`
    if the generation fails (before or during the stream). `cancel()` (any
    thread) ends the generation on the server; iteration then stops, and
    `end` stays None. As a context manager it cancels an unfinished stream on
    exit.

    Args:
        messages: an iterator of StreamPiece, ending with one StreamSummary.
        cancel: stops the transport (cancels the call, closes the connection).

    Example:

    ```python
    with client.generate_stream("charlm", prompt="the ", max_new_tokens=8, temperature=0) as stream:
        text = "".join(piece.text for piece in stream)
    stream.end.finish_reason, stream.end.generated_tokens
    # ('length', 8)
    ```
    """

    def __init__(self, messages, cancel):
        self._messages, self._cancel = messages, cancel
        self._cancelled = False
        self.end: StreamSummary | None = None

    def __iter__(self):
        try:
            for message in self._messages:
                if self._cancelled:  # what was already on its way is dropped
                    return
                if isinstance(message, StreamSummary):
                    self.end = message
                    return
                yield message
        except ServingError:
            if self._cancelled:
                return
            raise
        if self.end is None and not self._cancelled:
            raise ServingError("UNAVAILABLE", "The server ended the stream before its final message.")

    def cancel(self) -> None:
        """Ends the generation on the server (idempotent); iteration stops."""
        if self.end is None and not self._cancelled:
            self._cancelled = True
            self._cancel()

    def close(self) -> None:
        """Cancels the stream if it has not finished."""
        self.cancel()

    def __enter__(self) -> GenerationStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def generate_request(
    *,
    prompt=None,
    tokens=None,
    state=None,
    max_new_tokens=16,
    temperature=1.0,
    top_k=0,
    seed=0,
    stop=(),
    sequence_id=0,
    sequence_control=0,
):
    """A `protos.GenerateRequest` (without model_spec) from `generate_stream`'s arguments."""
    if (prompt is None) == (tokens is None):
        raise ValueError("Pass exactly one of `prompt` (text) and `tokens` (token ids).")
    if int(max_new_tokens) < 1:
        raise ValueError(f"Received max_new_tokens={max_new_tokens}; expected a positive integer.")
    if isinstance(stop, str):
        stop = (stop,)
    request = protos.GenerateRequest(
        max_new_tokens=int(max_new_tokens),
        temperature=float(temperature),
        top_k=int(top_k),
        seed=int(seed),
        stop=list(stop),
        sequence_id=int(sequence_id),
        sequence_control_input=int(sequence_control),
    )
    if prompt is not None:
        request.prompt = prompt
    else:
        request.tokens.extend(int(token) for token in np.asarray(tokens).ravel())
    if state is not None:
        request.state.extend(np.asarray(state, np.float32).ravel().tolist())  # (S,) or (1, S)
    return request


def summary_from_response(response, model: str) -> StreamSummary:
    """The StreamSummary of a final GenerateResponse (done = true)."""
    spec = response.model_spec
    return StreamSummary(
        finish_reason=response.finish_reason,
        generated_tokens=response.generated_tokens,
        sequence_id=response.sequence_id,
        state=np.asarray(response.state, np.float32) if response.state else None,
        last_token=response.last_token,
        model=spec.name or model,
        version=spec.version.value,
    )
