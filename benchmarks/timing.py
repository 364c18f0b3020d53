"""Side-by-side timing: warm up every contender, then time them round-robin.

A contender is a runner `run(calls) -> seconds`: it makes `calls`
consecutive calls of one step (a training step or a forward pass), each run
to completion, and returns the elapsed wall time. After `warmup` calls each,
a sample is `n` calls, with `n` chosen per contender so a sample lasts about
`min_seconds`; `repeats` rounds take one sample of every contender, in an
order rotated each round. A slow drift in machine load therefore hits every
contender alike, and the medians' ratios stay meaningful on a shared machine.

Runners may live in other processes (`throughput.py` keeps TensorFlow and
PyTorch apart: each framework's idle worker threads keep spinning for a
while after its own ops, and would slow the other one down).

`all_at_once` times concurrent work instead: N threads released together.
"""

from __future__ import annotations

import statistics
import threading
import time


def local_runner(function):
    """A runner for a zero-argument callable of this process."""

    def run(calls):
        start = time.perf_counter()
        for _ in range(calls):
            function()
        return time.perf_counter() - start

    return run


def time_side_by_side(runners, repeats=5, warmup=2, min_seconds=0.3, max_calls=50, on_round=None):
    """Median seconds per call of each runner, timed round-robin.

    Args:
        runners: `{name: run(calls) -> seconds}`.
        repeats: Samples per contender. Default: 5.
        warmup: Untimed calls per contender first (tracing, caches).
            Default: 2.
        min_seconds: Target duration of one sample. Default: 0.3.
        max_calls: Most calls in one sample. Default: 50.
        on_round: Called with the round number after each round (progress).

    Returns:
        `{name: {"median_s", "samples_s", "calls_per_sample"}}`.

    Example:

    >>> result = time_side_by_side({"noop": local_runner(lambda: None)}, repeats=3, warmup=1)
    >>> sorted(result["noop"])
    ['calls_per_sample', 'median_s', 'samples_s']
    """
    names = list(runners)
    calls = {}
    for name in names:
        runners[name](warmup)
        one = runners[name](1)
        calls[name] = max(1, min(max_calls, int(min_seconds / max(one, 1e-6))))
    samples = {name: [] for name in names}
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(runners[name](calls[name]) / calls[name])
        if on_round is not None:
            on_round(round_index + 1)
    return {
        name: {
            "median_s": statistics.median(samples[name]),
            "samples_s": samples[name],
            "calls_per_sample": calls[name],
        }
        for name in names
    }


def all_at_once(work, count):
    """Runs work(i) for i < count in `count` threads released together; returns the wall seconds.

    The first error of a thread is raised after all have finished.
    """
    barrier = threading.Barrier(count + 1)
    errors = []

    def run(index):
        barrier.wait()
        try:
            work(index)
        except Exception as error:  # reported after the join, never swallowed
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - started
