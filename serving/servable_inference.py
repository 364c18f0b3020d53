"""The four inference APIs run on one servable: Predict, Classify, Regress, MultiInference.

These functions take an already-resolved `Servable` and a request proto,
and return numpy outputs or result protos. The gRPC and REST front ends
(through `serving.server_core`) and the warmup replay all go through them, so a
request behaves the same whichever way it arrives.

Example:

```python
request = predict_pb2.PredictRequest()
request.model_spec.name = "charlm"
tensors.to_tensor_proto(np.array([[1, 2]], np.int32), out=request.inputs["tokens"])
outputs = predict(servable, request.model_spec.signature_name, request.inputs)
sorted(outputs)
# ['logits']
```
"""

from __future__ import annotations

from tensorflow_serving.apis import classification_pb2, inference_pb2, regression_pb2

from rnnserve.serving.classify_regress import (
    classification_result,
    classify_signature,
    examples_tensor_name,
    regress_signature,
    regression_result,
    run_examples,
    serialized_examples,
)
from rnnserve.serving.errors import ServingError
from rnnserve.serving.servable import CLASSIFY_METHOD, DEFAULT_SIGNATURE, REGRESS_METHOD, Servable


def fill_model_spec(spec, servable: Servable, signature_name: str | None) -> None:
    """Writes the answering model/version (and signature) into a response ModelSpec."""
    spec.name = servable.name
    spec.version.value = servable.version
    if signature_name is not None:
        spec.signature_name = signature_name or DEFAULT_SIGNATURE


def predict(
    servable: Servable,
    signature_name: str,
    inputs,
    output_filter=(),
    timeout_ms: int = 0,
    max_tensor_bytes=None,
    batcher=None,
) -> dict:
    """Checks and runs one Predict; returns alias -> numpy array.

    Args:
        servable: the resolved model version.
        signature_name: '' for serving_default.
        inputs: alias -> TensorProto or numpy array.
        output_filter: aliases to fetch (empty = all).
        timeout_ms: TensorFlow run timeout (0 = none).
        max_tensor_bytes: largest decoded TensorProto accepted, in bytes.
        batcher: a `serving.batching.Batcher`, or None to run alone.
    """
    arrays, aliases = servable.prepare_predict(signature_name, inputs, output_filter, max_tensor_bytes)
    if batcher is not None:
        return batcher.run(servable, signature_name or DEFAULT_SIGNATURE, arrays, aliases, timeout_ms)
    return servable.run(signature_name, arrays, aliases, timeout_ms)


def _run_examples(servable: Servable, request, plan, build_result, response, timeout_ms: int, check: bool):
    """Shared by Classify and Regress: check the signature, run the examples, fill the response."""
    signature_name = request.model_spec.signature_name
    _, aliases = plan(servable, signature_name, check)
    examples = serialized_examples(request.input)
    outputs = run_examples(servable, signature_name, examples, aliases, timeout_ms)
    fill_model_spec(response.model_spec, servable, signature_name)
    response.result.CopyFrom(build_result(outputs, len(examples)))
    return response


def classify(
    servable: Servable, request, timeout_ms: int = 0, method_name_check: bool = False
) -> classification_pb2.ClassificationResponse:
    """Runs a ClassificationRequest (any signature of classify structure unless `method_name_check`)."""
    return _run_examples(
        servable,
        request,
        classify_signature,
        classification_result,
        classification_pb2.ClassificationResponse(),
        timeout_ms,
        method_name_check,
    )


def regress(
    servable: Servable, request, timeout_ms: int = 0, method_name_check: bool = False
) -> regression_pb2.RegressionResponse:
    """Runs a RegressionRequest (any signature of regress structure unless `method_name_check`)."""
    return _run_examples(
        servable,
        request,
        regress_signature,
        regression_result,
        regression_pb2.RegressionResponse(),
        timeout_ms,
        method_name_check,
    )


def multi_inference(
    servable: Servable, request, timeout_ms: int = 0, method_name_check: bool = False
) -> inference_pb2.MultiInferenceResponse:
    """Runs several classify/regress signatures on one input, as TF Serving's multi_inference.cc.

    All tasks must name the same model and distinct signatures. Signatures
    may read different input tensors (TF2 gives each signature its own):
    each is fed the same serialized examples, as TF Serving does since 2.4;
    with `method_name_check` they must share one, TF Serving's older rule.
    Every output is fetched in one session run, as TF Serving does.
    """
    model_name, input_tensor, seen, plan = "", "", set(), []
    for task in request.tasks:
        if not task.model_spec.name:
            raise ServingError("INVALID_ARGUMENT", "Found ModelSpec with an empty model name.")
        if model_name and task.model_spec.name != model_name:
            raise ServingError(
                "INVALID_ARGUMENT",
                "All ModelSpecs in a MultiInferenceRequest must access the same model name.",
            )
        model_name = task.model_spec.name
        signature_name = task.model_spec.signature_name or DEFAULT_SIGNATURE
        if signature_name in seen:
            raise ServingError("INVALID_ARGUMENT", f"Duplicate evaluation of signature: {signature_name}")
        seen.add(signature_name)
        if signature_name not in servable.signatures:
            raise ServingError(
                "INVALID_ARGUMENT", f"Requested signature not found in model graph: {signature_name}"
            )
        if task.method_name == CLASSIFY_METHOD:
            signature, aliases = classify_signature(servable, signature_name, method_name_check)
        elif task.method_name == REGRESS_METHOD:
            signature, aliases = regress_signature(servable, signature_name, method_name_check)
        else:
            raise ServingError("UNIMPLEMENTED", f"Unsupported signature method_name: {task.method_name}")
        tensor_name = examples_tensor_name(signature)
        if method_name_check and input_tensor and tensor_name != input_tensor:
            raise ServingError("INVALID_ARGUMENT", "Input tensor must be the same for all Signatures.")
        input_tensor = tensor_name
        plan.append((task, signature, aliases))
    if not plan:
        raise ServingError("INVALID_ARGUMENT", "MultiInferenceRequest has no tasks.")
    examples = serialized_examples(request.input)
    # One session run, as TF Serving's: every task's input tensor is fed the
    # same examples, the union of the tasks' outputs is fetched.
    feeds = {examples_tensor_name(signature): examples for _, signature, _ in plan}
    fetches = sorted({signature.outputs[alias].name for _, signature, aliases in plan for alias in aliases})
    values = servable.run_tensors(feeds, fetches, timeout_ms)
    response = inference_pb2.MultiInferenceResponse()
    for task, signature, aliases in plan:
        outputs = {alias: values[signature.outputs[alias].name] for alias in aliases}
        result = response.results.add()
        fill_model_spec(result.model_spec, servable, task.model_spec.signature_name)
        if task.method_name == CLASSIFY_METHOD:
            result.classification_result.CopyFrom(classification_result(outputs, len(examples)))
        else:
            result.regression_result.CopyFrom(regression_result(outputs, len(examples)))
    return response
