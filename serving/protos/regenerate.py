"""Rebuilds `descriptors.binpb` from the `.proto` files beside this script.

    python serving/protos/regenerate.py          # rewrite descriptors.binpb
    python serving/protos/regenerate.py --check  # exit 1 if it is stale

Needs `grpcio-tools` (development only; the installed package only reads the
committed file). The command it runs, from the repository root, is:

    python -m grpc_tools.protoc \\
        --proto_path=rnnserve/serving/protos=serving/protos \\
        --include_imports --descriptor_set_out=serving/protos/descriptors.binpb \\
        serving/protos/*.proto

`--proto_path=VIRTUAL=DIR` names the files `rnnserve/serving/protos/*.proto`
inside the set, so they can never be mistaken for TensorFlow's own
`tensorflow/...` files; `--include_imports` adds `google/protobuf/any.proto`
and `wrappers.proto` (from grpc_tools' bundled includes), so the set is
self-contained. No source info is kept: comments stay in the `.proto` files.

`--check` compares the parsed sets, not the bytes, so a different protoc
release that serializes the same descriptors differently still passes.
"""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
VIRTUAL_DIR = "rnnserve/serving/protos"
OUTPUT = HERE / "descriptors.binpb"


def compile_protos(output: pathlib.Path) -> None:
    """Runs protoc (grpc_tools') over every .proto here, writing a FileDescriptorSet to `output`."""
    sources = sorted(str(path) for path in HERE.glob("*.proto"))
    command = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"--proto_path={VIRTUAL_DIR}={HERE}",
        "--include_imports",
        f"--descriptor_set_out={output}",
        *sources,
    ]
    subprocess.run(command, check=True)


def _parsed(data: bytes):
    from google.protobuf import descriptor_pb2

    return descriptor_pb2.FileDescriptorSet.FromString(data)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if descriptors.binpb is out of date")
    args = parser.parse_args(argv)
    if not args.check:
        compile_protos(OUTPUT)
        print(f"wrote {OUTPUT} ({OUTPUT.stat().st_size} bytes)")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = pathlib.Path(tmp) / "descriptors.binpb"
        compile_protos(fresh)
        if OUTPUT.exists() and _parsed(fresh.read_bytes()) == _parsed(OUTPUT.read_bytes()):
            print(f"{OUTPUT.name} is up to date")
            return 0
    print(f"{OUTPUT} is stale: run python {pathlib.Path(__file__).name} and commit it", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
