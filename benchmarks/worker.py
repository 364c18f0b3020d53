"""A benchmark worker process, driven by `throughput.py`.

    python -m benchmarks.worker serve          # JSON requests on stdin
    python -m benchmarks.worker rss '{...}'    # one peak-RSS measurement

`serve` builds contenders of one framework on request and runs timed calls
of them on demand, one JSON reply line per request:

    {"op": "build", "config": {...}, "contenders": ["fused", "cell"]}  → {"ok": true}
    {"op": "run", "contender": "fused", "phase": "train", "calls": 8}  → {"seconds": 0.31}
    {"op": "quit"}

so the parent can interleave contenders living in different processes (one
for TensorFlow, one for PyTorch: in one process, each framework's spinning
idle threads would slow the other down). A fresh process per configuration
also keeps measurements independent, and makes peak RSS honest: `rss`
builds a single contender, trains it a few steps and reports `ru_maxrss`.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from rnnserve.benchmarks import contenders  # noqa: E402


def _peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def peak_rss(config, kind, steps):
    """Peak RSS (MiB) after imports, after building, and after `steps` training steps."""
    __import__("torch" if kind == "torch" else "tensorflow")  # only this contender's framework
    before = _peak_rss_mib()
    contender = contenders.make(kind, config)
    built = _peak_rss_mib()
    for _ in range(steps):
        contender.train()
    return {"after_import_mib": before, "after_build_mib": built, "after_training_mib": _peak_rss_mib()}


def serve(requests, replies):
    """Answers `build` / `run` requests until `quit` or end of input."""
    import time

    built = {}
    for line in requests:
        request = json.loads(line)
        if request["op"] == "quit":
            break
        if request["op"] == "build":
            config = contenders.Config(**request["config"])
            for kind in request["contenders"]:
                built[kind] = contenders.make(kind, config)
            reply = {"ok": True}
        else:
            function = getattr(built[request["contender"]], request["phase"])
            start = time.perf_counter()
            for _ in range(request["calls"]):
                function()
            reply = {"seconds": time.perf_counter() - start}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    # Replies go to the original stdout; anything a library prints goes to stderr.
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    try:
        if argv[0] == "serve":
            serve(sys.stdin, replies)
        else:
            request = json.loads(argv[1])
            result = peak_rss(contenders.Config(**request["config"]), request["contender"], request["steps"])
            replies.write(json.dumps(result) + "\n")
    except Exception:
        replies.write(json.dumps({"error": traceback.format_exc()}) + "\n")
        replies.flush()
        raise SystemExit(1) from None
    replies.flush()


if __name__ == "__main__":
    main()
