"""Training and inference tokens/s and peak training RSS, side by side.

Our fused kernel, our cell path, Keras' built-in layer and PyTorch's
(contenders in `contenders.py`).

    rnnserve bench throughput            # the full grid, ~4 minutes on 2 cores
    rnnserve bench throughput --quick    # the main configuration, < 1 minute

The grid is the main configuration (E=64, H=256, B=32, T=64,
vocabulary 65) and its variations H ∈ {64, 512} and B ∈ {1, 128}, for the
LSTM and the GRU. Each configuration gets fresh worker processes
(`worker.py`), one for the TensorFlow contenders and one for PyTorch, and
the four contenders' samples are interleaved round-robin across them; peak
RSS is measured in one more process per contender on the main
configuration, so each number counts one framework and one model only.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tempfile
import time

from rnnserve.benchmarks import machine, timing
from rnnserve.benchmarks.contenders import CONTENDERS, Config
from rnnserve.benchmarks.report import machine_markdown, markdown_table, new_results
from rnnserve.errors import UserError

NAME = "throughput"
MAIN = Config()


def grid(quick=False):
    """The configurations to run: the main one per cell, then its variations."""
    if quick:
        return [MAIN]
    configs = []
    for cell in ("lstm", "gru"):
        base = dataclasses.replace(MAIN, cell=cell)
        configs += [
            base,
            dataclasses.replace(base, units=64),
            dataclasses.replace(base, units=512),
            dataclasses.replace(base, batch=1),
            dataclasses.replace(base, batch=128),
        ]
    return configs


def add_arguments(parser):
    parser.add_argument(
        "--quick", action="store_true", help="Main configuration only, fewer repeats (< 1 min)."
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="Samples per contender (default 5, quick 3)."
    )
    parser.add_argument(
        "--contenders",
        default=",".join(CONTENDERS),
        help=f"Comma-separated subset of {','.join(CONTENDERS)} (default: all).",
    )
    parser.add_argument("--no-rss", action="store_true", help="Skip the peak-RSS processes.")


class Worker:
    """A `benchmarks.worker serve` process holding one framework's contenders."""

    # Seconds to wait before timing a contender of another process than the
    # previous sample's, so that process's spinning idle threads park first.
    SETTLE = 0.05
    last = None

    def __init__(self, config, kinds):
        self.log = tempfile.TemporaryFile("w+")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "rnnserve.benchmarks.worker", "serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,  # a file: an unread pipe, once full, would block the worker
            text=True,
        )
        self.request({"op": "build", "config": dataclasses.asdict(config), "contenders": kinds})

    def request(self, request):
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            self.log.seek(0)
        reply = json.loads(line) if line else {"error": self.log.read()[-3000:]}
        if "error" in reply:
            raise RuntimeError(f"benchmark worker failed on {request}:\n{reply['error']}")
        return reply

    def runner(self, kind, phase):
        """A `timing` runner for `kind`'s `phase` in this process."""

        def run(calls):
            if Worker.last is not self:
                time.sleep(self.SETTLE)
                Worker.last = self
            return self.request({"op": "run", "contender": kind, "phase": phase, "calls": calls})["seconds"]

        return run

    def close(self):
        if self.process.poll() is None:
            self.process.stdin.write(json.dumps({"op": "quit"}) + "\n")
            self.process.stdin.close()
            self.process.wait(timeout=60)
        self.log.close()


def measure(config, kinds, repeats, min_seconds):
    """Training and inference seconds per step of every contender, side by
    side: TensorFlow contenders in one worker, PyTorch in another."""
    groups = {"torch": [k for k in kinds if k == "torch"], "tensorflow": [k for k in kinds if k != "torch"]}
    workers = {}
    try:
        for name, group in groups.items():  # built one after the other, not competing
            if group:
                workers[name] = Worker(config, group)
        result = {}
        for phase in ("train", "infer"):
            runners = {
                kind: workers["torch" if kind == "torch" else "tensorflow"].runner(kind, phase)
                for kind in kinds
            }
            timings = timing.time_side_by_side(runners, repeats=repeats, min_seconds=min_seconds)
            for t in timings.values():
                t["tokens_per_s"] = config.tokens / t["median_s"]
            result[phase] = timings
        return result
    finally:
        for worker in workers.values():
            worker.close()


def _rss(config, kind):
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "rnnserve.benchmarks.worker",
            "rss",
            json.dumps({"config": dataclasses.asdict(config), "contender": kind, "steps": 5}),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    reply = json.loads(completed.stdout.strip().splitlines()[-1]) if completed.stdout.strip() else {}
    if completed.returncode != 0 or "error" in reply:
        raise RuntimeError(
            f"peak-RSS worker failed for {kind}:\n{reply.get('error', completed.stderr[-3000:])}"
        )
    return reply


def _progress(done, total, label, started):
    width = 24
    filled = int(width * done / total)
    print(
        f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {time.time() - started:5.0f}s {label:<45}",
        end="" if done < total else "\n",
        flush=True,
    )


def _ratios(entry):
    """fused ÷ each other contender, for training and inference."""
    ratios = {}
    for phase in ("train", "infer"):
        tokens = {kind: t["tokens_per_s"] for kind, t in entry[phase].items()}
        if "fused" in tokens:
            ratios[phase] = {f"fused/{k}": tokens["fused"] / v for k, v in tokens.items() if k != "fused"}
    return ratios


def run(args):
    """Runs the grid (and the RSS processes); returns the results dict."""
    kinds = [k.strip() for k in args.contenders.split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(CONTENDERS))
    if unknown:
        raise UserError(f"unknown contender(s) {', '.join(unknown)}; choose from {', '.join(CONTENDERS)}")
    repeats = args.repeats or (3 if args.quick else 5)
    configs = grid(args.quick)
    rss_kinds = [] if (args.no_rss or args.quick) else kinds
    total = len(configs) + len(rss_kinds)
    results = new_results(NAME, runs=[])
    started = time.time()
    for index, config in enumerate(configs):
        _progress(index, total, config.label, started)
        measured = measure(config, kinds, repeats, 0.2 if args.quick else 0.3)
        entry = {"config": dataclasses.asdict(config), **measured}
        entry["ratios"] = _ratios(entry)
        results["runs"].append(entry)
    results["peak_rss"] = {}
    for index, kind in enumerate(rss_kinds):
        _progress(len(configs) + index, total, f"peak RSS {kind}", started)
        results["peak_rss"][kind] = _rss(MAIN, kind)
    _progress(total, total, "done", started)
    results["machine"]["busy_after"] = machine.busy_fraction()
    results["seconds"] = round(time.time() - started, 1)
    return results


# -- rendering ---------------------------------------------------------------

LABELS = {"fused": "ours, fused", "cell": "ours, cell path", "keras": "Keras built-in", "torch": "PyTorch"}


def _short(config):
    cell = config["cell"].upper()
    changed = [
        f"{key}={config[field]}"
        for key, field in (("B", "batch"), ("T", "steps"), ("E", "embedding"), ("H", "units"))
        if config[field] != getattr(MAIN, field)
    ]
    return f"{cell} " + (", ".join(changed) if changed else "main")


def _kilo(value):
    return f"{value / 1e3:.1f}k"


def markdown(results):
    """The throughput block of BENCHMARKS.md: one table per phase, RSS."""
    kinds = [k for k in CONTENDERS if any(k in run["train"] for run in results["runs"])]
    others = [k for k in ("torch", "keras", "cell") if k in kinds and "fused" in kinds]
    sections = [
        machine_markdown(results["machine"]),
        f"Command: `{results['command']}` ({results['seconds']} s).",
    ]
    for phase, title in (("train", "Training"), ("infer", "Inference")):
        header = (
            ["configuration"]
            + [f"{LABELS[k]} tok/s" for k in kinds]
            + [f"fused ÷ {LABELS[k]}" for k in others]
        )
        rows = []
        for run in results["runs"]:
            row = [_short(run["config"])] + [_kilo(run[phase][k]["tokens_per_s"]) for k in kinds]
            row += [f"{run['ratios'][phase][f'fused/{k}']:.2f}×" for k in others]
            rows.append(row)
        sections.append(
            f"**{title}** (tokens/s, median of {len(results['runs'][0][phase][kinds[0]]['samples_s'])}):"
        )
        sections.append(markdown_table(header, rows))
    if results.get("peak_rss"):
        header = ["contender", "after import (MiB)", "after build", "after 5 training steps"]
        rows = [
            [
                LABELS[k],
                f"{v['after_import_mib']:.0f}",
                f"{v['after_build_mib']:.0f}",
                f"{v['after_training_mib']:.0f}",
            ]
            for k, v in results["peak_rss"].items()
        ]
        sections.append(f"**Peak RSS of training** ({_short(dataclasses.asdict(MAIN))}, one process each):")
        sections.append(markdown_table(header, rows))
    return "\n\n".join(sections)


def chart(results, path):
    """Grouped bars of each contender's tokens/s relative to PyTorch's (or,
    without PyTorch, to the first contender's), training and inference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = [k for k in CONTENDERS if any(k in run["train"] for run in results["runs"])]
    reference = "torch" if "torch" in kinds else kinds[0]
    shown = [k for k in kinds if k != reference]
    labels = [_short(run["config"]) for run in results["runs"]]
    figure, axes = plt.subplots(2, 1, figsize=(max(8, 1.1 * len(labels) + 2), 8), constrained_layout=True)
    width = 0.8 / len(shown)
    for axis, (phase, title) in zip(axes, (("train", "Training"), ("infer", "Inference")), strict=True):
        for offset, kind in enumerate(shown):
            values = [
                run[phase][kind]["tokens_per_s"] / run[phase][reference]["tokens_per_s"]
                for run in results["runs"]
            ]
            positions = [i + (offset - (len(shown) - 1) / 2) * width for i in range(len(labels))]
            axis.bar(positions, values, width, label=LABELS[kind])
        axis.axhline(1.0, color="black", linewidth=1, linestyle="--", label=f"{LABELS[reference]} = 1")
        axis.set_ylabel(f"tokens/s ÷ {LABELS[reference]}")
        axis.set_title(
            f"{title}: Embedding → recurrent layer → Dense, tokens/s relative to {LABELS[reference]}"
        )
        axis.set_xticks(range(len(labels)), labels, rotation=20)
        axis.grid(axis="y", alpha=0.3)
    axes[0].legend(ncols=len(shown) + 1)
    figure.savefig(path, dpi=110)
    plt.close(figure)
