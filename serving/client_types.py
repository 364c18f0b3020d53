"""What the clients return: plain Python views of TF Serving's response protos.

Both `PredictionClient` (gRPC) and `RestClient` build these from the same
protos (`serving.protos`, no TensorFlow needed) (the REST client parses the JSON back into them), so code written
against one works against the other.

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
from rnnserve.serving.errors import CODES


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
