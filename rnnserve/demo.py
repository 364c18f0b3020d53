"""`rnnserve demo` (what `make demo` runs): the whole pipeline in about three
minutes on two cores, offline.

1. train a character LSTM on the built-in corpus for `--time-budget` seconds;
2. export it as a SavedModel version under `demo/export/charlm/`;
3. start the embedded TF-Serving-compatible server on 127.0.0.1;
4. stream text from it over gRPC with `rnnserve generate`, then make the
   same request over REST and print the equivalent `curl`;
5. stop the server.

Everything goes to `--dir` (default `demo/`), which the demo owns: its
`run/` and `export/` are replaced on every run.
"""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path

MODEL_NAME = "charlm"
PROMPT = "The "


def register(subparsers):
    parser = subparsers.add_parser("demo", help="train, export, serve and query a char LM (make demo)")
    parser.add_argument("--dir", default="demo", help="working directory, replaced each run (default: demo)")
    parser.add_argument("--time-budget", type=float, default=120.0, help="training seconds (default: 120)")
    parser.add_argument(
        "--max-new-tokens", type=int, default=300, help="characters to generate (default: 300)"
    )
    parser.set_defaults(func=run_demo)


def _banner(text):
    print(f"\n=== {text} ===", flush=True)


def run_demo(args):
    from rnnserve.cli import main
    from rnnserve.errors import UserError
    from rnnserve.serving.config import ServerOptions
    from rnnserve.serving.errors import ServingError
    from rnnserve.serving.server import ModelServer

    root = Path(args.dir)
    run_dir, export_base = root / "run", root / "export" / MODEL_NAME
    for path in (run_dir, export_base):
        shutil.rmtree(path, ignore_errors=True)

    _banner(f"1-2. Training a character LSTM for {args.time_budget:.0f} s, then exporting it")
    status = main(
        ["train", "charlm", "--out", str(run_dir), "--epochs", "100", "--time-budget", str(args.time_budget),
         "--export-base", str(export_base), "--sample-length", "120"]
    )  # fmt: skip
    if status:
        return status

    _banner("3. Starting the embedded TF-Serving-compatible server on 127.0.0.1")
    server = ModelServer(
        ServerOptions.for_model(MODEL_NAME, str(export_base.resolve()), port=0, rest_api_port=0)
    )
    try:
        server.start()
    except ServingError as error:
        raise UserError(f"Failed to start server: {error.code}: {error.message}") from None
    grpc_target, rest_url = f"127.0.0.1:{server.grpc_port}", f"http://127.0.0.1:{server.rest_port}"
    print(f"gRPC on {grpc_target}, REST on {rest_url}", flush=True)
    try:
        _banner("4a. rnnserve generate over gRPC (text printed as it arrives)")
        command = [
            "generate", "--server", grpc_target, "--model", MODEL_NAME, "--prompt", PROMPT,
            "--max-new-tokens", str(args.max_new_tokens), "--temperature", "0.7", "--top-k", "20", "--seed", "7",
        ]  # fmt: skip
        print("$ rnnserve " + " ".join(_quote(part) for part in command), flush=True)
        status = main(command)
        if status:
            return status

        _banner("4b. The same model over REST")
        body = {
            "signature_name": "generate_text",
            "inputs": {"prompt": [PROMPT], "max_new_tokens": 120, "temperature": 0.7, "top_k": 20, "seed": 7},
        }
        url = f"{rest_url}/v1/models/{MODEL_NAME}:predict"
        print(f"$ curl -s -X POST {url} -d '{json.dumps(body)}'", flush=True)
        request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=60) as response:
            reply = json.loads(response.read())  # {"outputs": [text]} (columnar format)
        print(PROMPT + reply["outputs"][0], flush=True)
    finally:
        _banner("5. Stopping the server")
        server.stop()
    print(f"Run directory: {run_dir}   SavedModels: {export_base}", flush=True)
    return 0


def _quote(part):
    return f'"{part}"' if (" " in part or not part) else part
