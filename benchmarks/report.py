"""Where benchmark results go: `benchmarks/results/NAME.json`, a PNG chart
next to it, and a generated block of `BENCHMARKS.md`.

Each benchmark owns one block between `<!-- NAME:begin -->` and
`<!-- NAME:end -->` markers; re-running a benchmark rewrites its block and
leaves every other line of the file (the hand-written notes) alone.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rnnserve.benchmarks import machine
from rnnserve.training.files import atomic_write_text

PACKAGE_DIR = Path(__file__).resolve().parent
RESULTS_DIR = PACKAGE_DIR / "results"
MARKDOWN = PACKAGE_DIR.parent / "BENCHMARKS.md"


def new_results(name, **fields):
    """The results dict every benchmark starts from: its name, the machine,
    the command that ran it, then `fields`."""
    return {
        "benchmark": name,
        "machine": machine.describe(),
        "command": "rnnserve " + " ".join(sys.argv[1:]),
        **fields,
    }


def write_json(results, path):
    """Writes `results` as indented JSON, creating the directory."""
    atomic_write_text(path, json.dumps(results, indent=1) + "\n")


def machine_markdown(description):
    """One paragraph describing the machine of a results dict."""
    busy = description.get("busy_before")
    busy_after = description.get("busy_after")
    load = description.get("load_average")
    shared = (busy is not None and busy > 0.1) or (busy_after is not None and busy_after > 0.1)
    lines = [
        f"Machine: {description.get('cpu')}, {description.get('cores')} cores, "
        f"{description.get('memory_gib')} GiB; {description.get('platform')}; Python "
        f"{description.get('python')}, TensorFlow {description.get('tensorflow')}, Keras "
        f"{description.get('keras')}, PyTorch {description.get('torch')}.",
        f"Load: average {load}; other processes used {busy} of the CPU before the run"
        + (f" and {busy_after} after it" if busy_after is not None else "")
        + (" — **a shared, noisy machine: read the ratios, not the absolute numbers**." if shared else "."),
    ]
    return "\n".join(lines)


def update_markdown(name, block, path=MARKDOWN):
    """Replaces (or appends) the `name` block of `BENCHMARKS.md` with `block`."""
    path = Path(path)
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    generated = f"{begin}\n{block.strip()}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + generated + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + generated + "\n"
    atomic_write_text(path, text)


def files_line(chart_path, json_path):
    """The line naming a run's chart and raw results, relative to the
    repository when they are in it (as in `BENCHMARKS.md`)."""

    def shown(path):
        path = Path(path).resolve()
        return path.relative_to(MARKDOWN.parent) if path.is_relative_to(MARKDOWN.parent) else path

    return f"Chart: `{shown(chart_path)}`; raw results: `{shown(json_path)}`."


def markdown_table(header, rows):
    """A GitHub Markdown table from a header list and row lists."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
