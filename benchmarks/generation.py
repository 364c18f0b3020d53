"""Generation tokens/s: the exported in-graph `generate` vs a Python loop over `step`.

    rnnserve bench generation            # B = 1 and 32, 128 new tokens, ~1 minute
    rnnserve bench generation --quick

Both contenders call the same SavedModel (`exported.py`: the main LSTM
configuration, loaded with `tf.saved_model.load`) and sample the same way
(temperature 1, no top-k): `generate` runs the whole sampling loop inside
the graph in one call; the loop calls `step` once per new token and draws
the next token in NumPy (Gumbel-max over the logits). Timed side by side,
round-robin (`timing.py`).
"""

from __future__ import annotations

import tempfile
import time

import numpy as np

from rnnserve.benchmarks import machine, timing
from rnnserve.benchmarks.report import machine_markdown, markdown_table, new_results

NAME = "generation"
BATCHES = (1, 32)
LABELS = {"generate": "in-graph generate", "step_loop": "per-step loop over step"}


def add_arguments(parser):
    parser.add_argument("--quick", action="store_true", help="Fewer tokens and repeats (< 30 s).")
    parser.add_argument(
        "--new-tokens", type=int, default=None, help="Tokens per call (default 128, quick 32)."
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="Samples per contender (default 5, quick 3)."
    )


def _runners(signatures, batch, new_tokens, state_width):
    import tensorflow as tf

    generate, step = signatures["generate"], signatures["step"]
    prompt = tf.ones((batch, 1), tf.int32)
    zeros = tf.zeros((batch, state_width), tf.float32)
    rng = np.random.default_rng(0)

    def in_graph():
        generate(
            tokens=prompt,
            state=zeros,
            max_new_tokens=tf.constant(new_tokens),
            temperature=tf.constant(1.0),
            top_k=tf.constant(0),
            seed=tf.constant(0, tf.int64),
        )["tokens"].numpy()

    def step_loop():
        tokens, state = prompt, zeros
        for _ in range(new_tokens):
            out = step(tokens=tokens, state=state)
            logits = out["logits"][:, -1].numpy()  # (B, V)
            logits[:, 0] = -np.inf  # [UNK] is never generated
            chosen = np.argmax(logits + rng.gumbel(size=logits.shape), axis=-1)
            tokens, state = tf.constant(chosen[:, None].astype(np.int32)), out["state"]

    return {"generate": timing.local_runner(in_graph), "step_loop": timing.local_runner(step_loop)}


def run(args):
    """Exports the model, times both contenders at each batch size; returns the results."""
    import tensorflow as tf

    from rnnserve.benchmarks import exported

    new_tokens = args.new_tokens or (32 if args.quick else 128)
    repeats = args.repeats or (3 if args.quick else 5)
    results = new_results(NAME, new_tokens=new_tokens, runs=[])
    started = time.time()
    with tempfile.TemporaryDirectory() as directory:
        loaded = tf.saved_model.load(exported.export(directory))
        width = loaded.signatures["step"].structured_input_signature[1]["state"].shape[-1]
        for batch in BATCHES:
            print(f"generation: B={batch}, {new_tokens} new tokens …", flush=True)
            timed = timing.time_side_by_side(
                _runners(loaded.signatures, batch, new_tokens, width), repeats=repeats, warmup=1, max_calls=20
            )
            entry = {"batch": batch, "contenders": {}}
            for kind, measured in timed.items():
                entry["contenders"][kind] = {
                    **measured,
                    "tokens_per_s": batch * new_tokens / measured["median_s"],
                }
            speeds = entry["contenders"]
            entry["speedup"] = speeds["generate"]["tokens_per_s"] / speeds["step_loop"]["tokens_per_s"]
            results["runs"].append(entry)
    results["machine"]["busy_after"] = machine.busy_fraction()
    results["seconds"] = round(time.time() - started, 1)
    return results


def markdown(results):
    """The generation block of BENCHMARKS.md."""
    header = ["batch", f"{LABELS['generate']} tok/s", f"{LABELS['step_loop']} tok/s", "speed-up"]
    rows = [
        [
            f"B={run['batch']}",
            f"{run['contenders']['generate']['tokens_per_s']:,.0f}",
            f"{run['contenders']['step_loop']['tokens_per_s']:,.0f}",
            f"{run['speedup']:.1f}×",
        ]
        for run in results["runs"]
    ]
    return "\n\n".join(
        [
            machine_markdown(results["machine"]),
            f"Command: `{results['command']}` ({results['seconds']} s); "
            f"{results['new_tokens']} new tokens per call, median of "
            f"{len(results['runs'][0]['contenders']['generate']['samples_s'])} samples.",
            markdown_table(header, rows),
        ]
    )


def chart(results, path):
    """Bars of tokens/s per contender and batch size (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4), constrained_layout=True)
    labels = [f"B={run['batch']}" for run in results["runs"]]
    for offset, kind in enumerate(LABELS):
        values = [run["contenders"][kind]["tokens_per_s"] for run in results["runs"]]
        axis.bar([i + (offset - 0.5) * 0.4 for i in range(len(labels))], values, 0.4, label=LABELS[kind])
    axis.set_yscale("log")
    axis.set_xticks(range(len(labels)), labels)
    axis.set_ylabel("generated tokens/s (log)")
    axis.set_title(f"Generating {results['new_tokens']} tokens from the exported LSTM")
    axis.grid(axis="y", alpha=0.3)
    axis.legend()
    figure.savefig(path, dpi=110)
    plt.close(figure)
