"""Classify and Regress on one servable: TF Serving's `classifier.cc` / `regressor.cc` rules.

A classify or regress signature (by method name, or any signature of that
structure: TF Serving's `--enable_signature_method_name_check` is off by
default) reads one string tensor, `inputs`, of
serialized `tf.Example`s (B,) and writes `classes` (B, C) string and/or
`scores` (B, C) float, or `outputs` (B,) / (B, 1) float. The functions
here check a signature's structure, turn a request's `Input` proto into the
tensor TF Serving feeds, and build the result protos from what the session
returned, with TF Serving's messages.

Example:

```python
signature, aliases = classify_signature(servable, "serving_default")
aliases
# ['classes', 'scores']
examples = serialized_examples(request.input)            # (B,) object array of bytes
result = classification_result(servable.run("serving_default", {"inputs": examples}, aliases), len(examples))
```
"""

from __future__ import annotations

import numpy as np
from google.protobuf import text_format
from tensorflow_serving.apis import classification_pb2, regression_pb2

from rnnserve.serving.errors import ServingError
from rnnserve.serving.servable import CLASSIFY_METHOD, DEFAULT_SIGNATURE, REGRESS_METHOD

EXAMPLES_INPUT = "inputs"  # kClassifyInputs / kRegressInputs
CLASSES, SCORES = "classes", "scores"  # kClassifyOutputClasses / kClassifyOutputScores
REGRESS_OUTPUT = "outputs"  # kRegressOutputs


def _method_signature(servable, signature_name: str, method: str, kind: str, method_name_check: bool):
    name = signature_name or DEFAULT_SIGNATURE
    if name not in servable.signatures:
        raise ServingError("INVALID_ARGUMENT", f"No signature was found with the name: {name}")
    signature = servable.signatures[name]
    if method_name_check and signature.method_name != method:
        raise ServingError(
            "INVALID_ARGUMENT",
            f"Expected {kind} signature method_name to be {method}. Was: {signature.method_name}",
        )
    return signature


def _single_input(signature, kind: str) -> None:
    if len(signature.inputs) != 1:
        raise ServingError("INVALID_ARGUMENT", "Expected one input Tensor.")
    if EXAMPLES_INPUT not in signature.inputs:
        raise ServingError(
            "INVALID_ARGUMENT",
            f"No {kind} inputs found in SignatureDef: {text_format.MessageToString(signature)}",
        )


def classify_signature(
    servable, signature_name: str, method_name_check: bool = False
) -> tuple[object, list[str]]:
    """The classify SignatureDef and the output aliases it provides (classes/scores).

    With `method_name_check` (`--enable_signature_method_name_check`) its
    method_name must be classify; without it (TF Serving's default) any
    signature of the right structure works, TF2's predict ones included.
    """
    signature = _method_signature(
        servable, signature_name, CLASSIFY_METHOD, "classification", method_name_check
    )
    _single_input(signature, "classification")
    if len(signature.outputs) not in (1, 2):
        raise ServingError(
            "INVALID_ARGUMENT", f"Expected one or two output Tensors, found {len(signature.outputs)}"
        )
    outputs = [alias for alias in (CLASSES, SCORES) if alias in signature.outputs]
    if not outputs:
        raise ServingError(
            "INVALID_ARGUMENT",
            'Expected classification signature outputs to contain at least one of "classes" or '
            f'"scores". Signature was: {text_format.MessageToString(signature)}',
        )
    return signature, outputs


def regress_signature(
    servable, signature_name: str, method_name_check: bool = False
) -> tuple[object, list[str]]:
    """The regress SignatureDef and its single output alias (`outputs`); method_name as for classify."""
    signature = _method_signature(servable, signature_name, REGRESS_METHOD, "regression", method_name_check)
    _single_input(signature, "regression")
    if len(signature.outputs) != 1:
        raise ServingError("INVALID_ARGUMENT", "Expected one output Tensor.")
    if REGRESS_OUTPUT not in signature.outputs:
        raise ServingError(
            "INVALID_ARGUMENT",
            f"No regression outputs found in SignatureDef: {text_format.MessageToString(signature)}",
        )
    return signature, [REGRESS_OUTPUT]


def run_examples(servable, signature_name: str, examples: np.ndarray, aliases, timeout_ms: int = 0) -> dict:
    """Runs serialized tf.Examples (B,) through a classify/regress signature; alias -> array."""
    return servable.run(signature_name or DEFAULT_SIGNATURE, {EXAMPLES_INPUT: examples}, aliases, timeout_ms)


def examples_tensor_name(signature) -> str:
    """The graph tensor a classify/regress signature feeds its examples to."""
    return signature.inputs[EXAMPLES_INPUT].name


def serialized_examples(request_input) -> np.ndarray:
    """An `Input` proto as the (B,) string tensor TF Serving feeds (context bytes prepended)."""
    kind = request_input.WhichOneof("kind")
    if kind == "example_list":
        serialized = [example.SerializeToString() for example in request_input.example_list.examples]
    elif kind == "example_list_with_context":
        with_context = request_input.example_list_with_context
        context = with_context.context.SerializeToString()
        serialized = [context + example.SerializeToString() for example in with_context.examples]
    else:
        serialized = []
    if not serialized:
        raise ServingError("INVALID_ARGUMENT", "Input is empty.")
    array = np.empty(len(serialized), dtype=object)
    array[:] = serialized
    return array


def classification_result(outputs: dict, num_examples: int) -> classification_pb2.ClassificationResult:
    """Checks classify outputs like TF Serving and builds the ClassificationResult."""
    classes, scores = outputs.get("classes"), outputs.get("scores")
    for name, tensor, dtype in (("classes", classes, object), ("scores", scores, np.float32)):
        if tensor is None:
            continue
        if tensor.ndim != 2:
            raise ServingError(
                "INVALID_ARGUMENT",
                f"Expected Tensor shape: [batch_size num_classes] but got {list(tensor.shape)}",
            )
        if tensor.dtype != dtype:
            wanted = "DT_STRING" if dtype is object else "DT_FLOAT"
            raise ServingError("INVALID_ARGUMENT", f"Expected {name} Tensor of {wanted}. Got: {tensor.dtype}")
        if tensor.shape[0] != num_examples:
            raise ServingError(
                "INVALID_ARGUMENT",
                f"Expected {name} output batch size of {num_examples}. Got: {tensor.shape[0]}",
            )
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise ServingError(
            "INVALID_ARGUMENT",
            f"Tensors class and score should match in dim_size(1). Got {classes.shape[1]} vs. {scores.shape[1]}",
        )
    num_classes = (classes if classes is not None else scores).shape[1]
    result = classification_pb2.ClassificationResult()
    for row in range(num_examples):
        classifications = result.classifications.add()
        for column in range(num_classes):
            item = classifications.classes.add()
            if classes is not None:
                item.label = bytes(classes[row, column]).decode("utf-8", errors="replace")
            if scores is not None:
                item.score = float(scores[row, column])
    return result


def regression_result(outputs: dict, num_examples: int) -> regression_pb2.RegressionResult:
    """Checks the regress output like TF Serving and builds the RegressionResult."""
    tensor = outputs["outputs"]
    if not (tensor.ndim == 1 or (tensor.ndim == 2 and tensor.shape[1] == 1)):
        raise ServingError(
            "INVALID_ARGUMENT",
            f"Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got {list(tensor.shape)}",
        )
    if tensor.shape[0] != num_examples:
        raise ServingError(
            "INVALID_ARGUMENT",
            f"Input batch size did not match output batch size: {num_examples} vs. {tensor.shape[0]}",
        )
    if tensor.dtype != np.float32:
        raise ServingError("INVALID_ARGUMENT", f"Expected output Tensor of DT_FLOAT.  Got: {tensor.dtype}")
    result = regression_pb2.RegressionResult()
    for value in tensor.reshape(-1):
        result.regressions.add(value=float(value))
    return result
