"""Predict on a server-side sequence: OpenVINO Model Server's stateful inputs on `step` / `generate`.

A Predict on the `step` or `generate` signature that carries the extra
inputs `sequence_id` (DT_UINT64, shape [1]) and / or
`sequence_control_input` (DT_UINT32, shape [1]) runs on a sequence whose
`state` the server keeps (`serving.sequences`); the client leaves `state`
out. Controls (`rnnserve.contract`):

| control | sequence_id | what happens |
|---|---|---|
| 1 start | 0 (or absent) / a free id | new sequence from zeros, or from the request's `state` (resume a snapshot) |
| 0 none (or absent) | the sequence's | continue: the kept state is fed, the new one kept |
| 2 end | the sequence's | the last call: runs, then the sequence is gone |
| 3 fork | the parent's | a new sequence from a copy of the parent's state consumes the request's tokens; the parent is unchanged |

The response carries the outputs plus `sequence_id` (the new id for a start
or fork); `state` only when `output_filter` asks for it. The kept state is
exactly the signature's `state` output, so with `generate` the next call's
tokens start with the last token returned (as with client-held state).

Errors are OVMS's codes: NOT_FOUND (unknown, ended or expired id),
ALREADY_EXISTS (start with an id in use), UNAVAILABLE (the model's
`--max_sequence_number` reached), INVALID_ARGUMENT (a bad control tensor or
value, no id where one is needed, `state` sent mid-sequence, more than one
row). A failed call changes no sequence. Calls on one sequence run one at
a time; a call whose deadline passes while it waits is DEADLINE_EXCEEDED.
A sequence runs on the version it started on (pinned), whatever version
"latest" is meanwhile; a request naming another version is INVALID_ARGUMENT.

Example:

```python
inputs = {"tokens": tokens_proto, "sequence_control_input": start_proto}   # no state
servable, outputs = predict(store, manager, servable, spec, inputs)
sorted(outputs)
# ['logits', 'sequence_id']
```
"""

from __future__ import annotations

import contextlib

import numpy as np
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import model_pb2

from rnnserve import contract
from rnnserve.serving import tensors
from rnnserve.serving.errors import ServingError
from rnnserve.serving.servable import DEFAULT_SIGNATURE

CONTROL_DTYPES = {
    contract.SEQUENCE_ID: np.dtype(np.uint64),
    contract.SEQUENCE_CONTROL_INPUT: np.dtype(np.uint32),
}
_CONTROL_ENUMS = {
    contract.SEQUENCE_ID: types_pb2.DT_UINT64,
    contract.SEQUENCE_CONTROL_INPUT: types_pb2.DT_UINT32,
}
CONTROLS = {
    contract.SEQUENCE_CONTINUE: "none",
    contract.SEQUENCE_START: "start",
    contract.SEQUENCE_END: "end",
    contract.SEQUENCE_FORK: "fork",
}


def names_sequence(inputs) -> bool:
    """Whether a Predict's inputs (alias -> tensor) name a server-side sequence."""
    return contract.SEQUENCE_ID in inputs or contract.SEQUENCE_CONTROL_INPUT in inputs


def rest_dtypes(json_inputs, dtypes: dict) -> dict:
    """The dtypes to read a REST body's columnar `inputs` with: the controls, and the signature's it names.

    A sequence request leaves `state` out; reading only the inputs the body
    names lets the usual checks report what is missing or extra.

    >>> dtypes = {"tokens": np.dtype(np.int32), "state": np.dtype(np.float32)}
    >>> rest_dtypes({"tokens": [[1]], "sequence_id": [7]}, dtypes)
    {'tokens': dtype('int32'), 'sequence_id': dtype('uint64')}
    """
    wanted = {name: dtype for name, dtype in dtypes.items() if name in json_inputs}
    wanted.update({name: dtype for name, dtype in CONTROL_DTYPES.items() if name in json_inputs})
    return wanted


def _control(value, alias: str) -> int:
    """The one number of a control input (TensorProto or array); 0 when absent."""
    wanted = f'Input "{alias}" must be a {tensors.dtype_name(_CONTROL_ENUMS[alias])} tensor of shape [1]'
    if value is None:
        return 0
    if not isinstance(value, np.ndarray):
        if value.dtype != _CONTROL_ENUMS[alias]:
            raise ServingError("INVALID_ARGUMENT", f"{wanted}; got {tensors.dtype_name(value.dtype)}.")
        if not value.HasField("tensor_shape"):
            raise ServingError("INVALID_ARGUMENT", f"{wanted}; its proto has no tensor shape.")
        try:
            value = tensors.to_ndarray(value, max_bytes=64)
        except tensors.TensorError:
            raise ServingError.tensor_parsing(alias) from None
    if value.shape != (1,):
        raise ServingError("INVALID_ARGUMENT", f"{wanted}; got shape {list(value.shape)}.")
    return int(value[0])


def _one_row(arrays: dict, signature) -> None:
    """A sequence is one row: every batched input must have exactly one."""
    for alias, array in arrays.items():
        batched = len(signature.inputs[alias].tensor_shape.dim) > 0
        if batched and (array.ndim == 0 or array.shape[0] != 1):
            rows = array.shape[0] if array.ndim else 0
            raise ServingError(
                "INVALID_ARGUMENT",
                f'A sequence is one row, but input "{alias}" has {rows}: send one row per call with a '
                "sequence_id, or leave the sequence inputs out to run a batch.",
            )


def _run(
    servable, signature_name: str, inputs: dict, output_filter, timeout_ms: int, max_tensor_bytes, batcher
):
    """Checks and runs one row; returns (outputs to answer, the new state (1, S))."""
    signature = servable.signature(signature_name)
    asked = [alias for alias in output_filter if alias != contract.SEQUENCE_ID]  # always answered
    fetch = asked + [contract.STATE] if output_filter and contract.STATE not in asked else asked
    arrays, aliases = servable.prepare_predict(signature_name, inputs, fetch, max_tensor_bytes)
    _one_row(arrays, signature)
    if batcher is not None:
        outputs = batcher.run(servable, signature_name, arrays, aliases, timeout_ms)
    else:
        outputs = servable.run(signature_name, arrays, aliases, timeout_ms)
    state = outputs[contract.STATE]
    if contract.STATE not in asked:
        del outputs[contract.STATE]
    return outputs, state


def _zero_state(servable, signature_name: str) -> np.ndarray:
    dims = servable.signature(signature_name).inputs[contract.STATE].tensor_shape.dim
    if len(dims) != 2 or dims[1].size < 1:
        raise ServingError(
            "FAILED_PRECONDITION",
            f'Signature "{signature_name}" has no static state size S (state must be (B, S)).',
        )
    return np.zeros((1, dims[1].size), np.float32)


@contextlib.contextmanager
def _locked(sequence, timeout_ms: int, store):
    """Holds a sequence's lock (waiting up to the call's deadline); NOT_FOUND if it ended meanwhile."""
    if not sequence.lock.acquire(timeout=timeout_ms / 1000 if timeout_ms > 0 else -1):
        raise ServingError(
            "DEADLINE_EXCEEDED",
            f"Sequence {sequence.sequence_id} was busy with another call until the deadline.",
        )
    try:
        if not sequence.live:
            raise store.not_found(sequence.model, sequence.sequence_id)
        yield sequence
    finally:
        sequence.lock.release()


def _lease_version(manager, servable, version: int, signature_name: str):
    """The servable of `version` (the leased one if it is that version)."""
    if servable.version == version:
        return contextlib.nullcontext(servable)
    spec = model_pb2.ModelSpec(name=servable.name, signature_name=signature_name)
    spec.version.value = version
    return manager.lease(spec)


class SequenceCall:
    """One call on a server-side sequence, from its checks until it commits or aborts.

    While it is open it holds the sequence's lock (a new sequence's too) and
    a lease on the version the sequence is pinned to.

    Attributes:
        servable: the version to run on (the sequence's pinned one).
        state: the state (1, S) to feed, or None when the request's own `state`
            starts the sequence (resume).
        sequence_id: the id to answer (the new one for a start or fork).
    """

    def __init__(self, store, sequence, servable, state, new: bool, control: int, exits):
        self.servable, self.state, self.sequence_id = servable, state, sequence.sequence_id
        self._store, self._sequence, self._new, self._control, self._exits = (
            store,
            sequence,
            new,
            control,
            exits,
        )

    def commit(self, state: np.ndarray) -> None:
        """The call succeeded: keep `state` (1, S) (an end removes the sequence), release everything."""
        try:
            if self._new:
                self._store.commit(self._sequence, state)
                self._sequence.lock.release()
            elif self._control == contract.SEQUENCE_END:
                self._store.end(self._sequence)
            else:
                self._store.commit(self._sequence, state)
        finally:
            self._exits.close()

    def abort(self) -> None:
        """The call failed: nothing changes (a new sequence is forgotten), release everything."""
        try:
            if self._new:
                self._store.discard(self._sequence)
        finally:
            self._exits.close()


def check_control(control: int) -> None:
    """INVALID_ARGUMENT unless `control` is one of the four controls."""
    if control not in CONTROLS:
        raise ServingError(
            "INVALID_ARGUMENT",
            f"Unexpected value of sequence control input: {control}; expected 0 (none), 1 (start), "
            "2 (end) or 3 (fork).",
        )


def begin(
    store,
    manager,
    servable,
    model_spec,
    sequence_id: int,
    control: int,
    resume: bool,
    signature_name: str,
    timeout_ms: int = 0,
) -> SequenceCall:
    """Opens one call on a server-side sequence (the checks of the module docstring).

    Args:
        store: the server's `SequenceStore`.
        manager: the `ModelManager` (to lease a sequence's pinned version).
        servable: the version `model_spec` resolved to (leased by the caller).
        model_spec: the request's ModelSpec.
        sequence_id: the request's id (0 = none).
        control: a checked control (`check_control`).
        resume: whether the request carries its own `state`.
        signature_name: the signature the call runs (it must take `state`).
        timeout_ms: the longest wait for a busy sequence (0 = none).

    Raises:
        ServingError: the module docstring's codes; nothing is held then.
    """
    if contract.STATE not in servable.signature(signature_name).inputs:
        raise ServingError("INVALID_ARGUMENT", f'Signature "{signature_name}" has no "state" input to keep.')
    model = servable.name
    exits = contextlib.ExitStack()
    if control == contract.SEQUENCE_START:
        state = None if resume else _zero_state(servable, signature_name)  # a snapshot is fed as sent
        sequence = store.reserve(model, sequence_id, servable.version, None)
        return SequenceCall(store, sequence, servable, state, True, control, exits)

    if not sequence_id:
        raise ServingError(
            "INVALID_ARGUMENT",
            f"Sequence ID has not been provided in request inputs: sequence_control_input {control} "
            f"({CONTROLS[control]}) needs the sequence_id of a started sequence.",
        )
    if resume:
        raise ServingError(
            "INVALID_ARGUMENT",
            f"Sequence {sequence_id} keeps its state on the server: leave out state, or send it only "
            "with sequence_control_input 1 (start) to resume a snapshot.",
        )
    sequence = store.get(model, sequence_id)
    if model_spec.WhichOneof("version_choice") is not None and servable.version != sequence.version:
        raise ServingError(
            "INVALID_ARGUMENT",
            f"Sequence {sequence_id} runs on version {sequence.version} of model {model}, "
            f"but the request names version {servable.version}.",
        )
    try:
        exits.enter_context(_locked(sequence, timeout_ms, store))
        pinned = exits.enter_context(_lease_version(manager, servable, sequence.version, signature_name))
        if control == contract.SEQUENCE_FORK:
            child = store.reserve(model, 0, sequence.version, sequence.state)
            return SequenceCall(store, child, pinned, sequence.state, True, control, exits)
        return SequenceCall(store, sequence, pinned, sequence.state, False, control, exits)
    except BaseException:
        exits.close()
        raise


def predict(
    store,
    manager,
    servable,
    model_spec,
    inputs,
    output_filter=(),
    timeout_ms: int = 0,
    max_tensor_bytes=None,
    batcher=None,
):
    """Runs one Predict on a server-side sequence; returns (the servable that ran it, outputs).

    Args:
        store: the server's `SequenceStore`.
        manager: the `ModelManager` (to lease a sequence's pinned version).
        servable: the version `model_spec` resolved to (leased by the caller).
        model_spec: the request's ModelSpec.
        inputs: alias -> TensorProto / array, including the control inputs.
        output_filter: output aliases to return (empty = all but `state`).
        timeout_ms: TensorFlow run timeout, also the longest wait for a busy sequence (0 = none).
        max_tensor_bytes: the largest decoded input TensorProto accepted.
        batcher: runs the checked call with other sequences' (`--enable_batching`), or None.
    """
    inputs = dict(inputs)
    sequence_id = _control(inputs.pop(contract.SEQUENCE_ID, None), contract.SEQUENCE_ID)
    control = _control(inputs.pop(contract.SEQUENCE_CONTROL_INPUT, None), contract.SEQUENCE_CONTROL_INPUT)
    check_control(control)
    signature_name = model_spec.signature_name or DEFAULT_SIGNATURE
    if signature_name not in contract.SEQUENCE_SIGNATURES:
        raise ServingError(
            "INVALID_ARGUMENT",
            f'Server-side sequences run on the "step" and "generate" signatures, not "{signature_name}": '
            "leave out sequence_id and sequence_control_input.",
        )
    call = begin(
        store,
        manager,
        servable,
        model_spec,
        sequence_id,
        control,
        contract.STATE in inputs,
        signature_name,
        timeout_ms,
    )
    try:
        if call.state is not None:
            inputs[contract.STATE] = call.state
        outputs, state = _run(
            call.servable, signature_name, inputs, output_filter, timeout_ms, max_tensor_bytes, batcher
        )
    except BaseException:
        call.abort()
        raise
    call.commit(state)
    outputs[contract.SEQUENCE_ID] = np.array([call.sequence_id], np.uint64)
    return call.servable, outputs
