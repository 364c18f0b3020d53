"""`rnnserve inspect`: what a published export offers, without loading it.

Prints the SignatureDefs exactly as `saved_model_cli show --all` prints them
(tag-set, then every signature's inputs and outputs with dtype, shape and
tensor name, and its method name), then the rnnserve metadata of
`assets.extra/rnnserve.json`. Given an export base, it shows the highest
version and lists the others.

    $ rnnserve inspect exports/charlm
    SavedModel exports/charlm/2 (versions in exports/charlm: 1, 2)

    MetaGraphDef with tag-set: 'serve' contains the following SignatureDefs:

    signature_def['generate']:
      The given SavedModel SignatureDef contains the following input(s):
        inputs['max_new_tokens'] tensor_info:
            dtype: DT_INT32
            shape: ()
            name: generate_max_new_tokens:0
    ...
"""

from __future__ import annotations

import json
import os

from rnnserve.errors import UserError
from rnnserve.training.export.versions import existing_versions


def resolve_version_dir(path):
    """`(version_dir, header line)` for a version directory or an export base."""
    if os.path.exists(os.path.join(path, "saved_model.pb")):
        return path, f"SavedModel {path}"
    found = existing_versions(path)
    if not found:
        raise UserError(f"{path} is neither a SavedModel directory nor an export base with integer versions.")
    listed = ", ".join(str(v) for v in found)
    return os.path.join(
        path, str(found[-1])
    ), f"SavedModel {os.path.join(path, str(found[-1]))} (versions in {path}: {listed})"


def _tensor_lines(kind, key, info):
    from tensorflow.core.framework import types_pb2

    if info.tensor_shape.unknown_rank:
        shape = "unknown_rank"
    else:
        shape = "(" + ", ".join(str(dim.size) for dim in info.tensor_shape.dim) + ")"
    return [
        f"    {kind}['{key}'] tensor_info:",
        f"        dtype: {types_pb2.DataType.Name(info.dtype)}",
        f"        shape: {shape}",
        f"        name: {info.name}",
    ]


def format_signatures(version_dir):
    """The SignatureDef section of `saved_model_cli show --all`, as text."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(version_dir, "saved_model.pb"), "rb") as f:
        saved_model.ParseFromString(f.read())
    lines = []
    for meta_graph in sorted(saved_model.meta_graphs, key=lambda m: list(m.meta_info_def.tags)):
        tags = ", ".join(meta_graph.meta_info_def.tags)
        lines += ["", f"MetaGraphDef with tag-set: '{tags}' contains the following SignatureDefs:"]
        for key in sorted(meta_graph.signature_def):
            signature = meta_graph.signature_def[key]
            lines += ["", f"signature_def['{key}']:"]
            lines.append("  The given SavedModel SignatureDef contains the following input(s):")
            for name in sorted(signature.inputs):
                lines += _tensor_lines("inputs", name, signature.inputs[name])
            lines.append("  The given SavedModel SignatureDef contains the following output(s):")
            for name in sorted(signature.outputs):
                lines += _tensor_lines("outputs", name, signature.outputs[name])
            lines.append(f"  Method name is: {signature.method_name}")
    return "\n".join(lines)


def describe(path):
    """The full `rnnserve inspect` text for a version directory or export base."""
    version_dir, header = resolve_version_dir(path)
    from rnnserve.contract import METADATA_FILE
    from rnnserve.training.export.writer import read_metadata

    if os.path.exists(os.path.join(version_dir, METADATA_FILE)):
        metadata = read_metadata(version_dir)
        metadata.pop("signatures", None)  # shown above, from the SavedModel itself
        extra = f"rnnserve metadata ({METADATA_FILE}):\n{json.dumps(metadata, indent=2, sort_keys=True)}"
    else:
        extra = f"no rnnserve metadata ({METADATA_FILE} is missing)"
    return f"{header}\n{format_signatures(version_dir)}\n\n{extra}"
