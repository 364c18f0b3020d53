"""`rnnserve bench …`: the benchmark subcommands.

    rnnserve bench throughput [--quick]     # training/inference tokens/s, peak RSS
    rnnserve bench generation [--quick]     # in-graph generate vs a per-step loop
    rnnserve bench serving [--quick]        # Predict latency through the server
    rnnserve bench all [--quick]            # every benchmark

Each module of `BENCHMARK_MODULES` is one subcommand. A full run
writes `benchmarks/results/NAME.json` and `NAME.png` and rewrites its block
of `BENCHMARKS.md`; a `--quick` run writes `NAME-quick.json` only and prints
the table.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

BENCHMARK_MODULES = (
    "rnnserve.benchmarks.throughput",
    "rnnserve.benchmarks.generation",
    "rnnserve.benchmarks.serving",
)


def _available():
    return [importlib.import_module(name) for name in BENCHMARK_MODULES]


def _summary(module):
    return (module.__doc__ or module.NAME).strip().splitlines()[0]


def _run(modules, args, own_arguments=True):
    """Runs each module; `own_arguments=False` (for `bench all`) completes
    `args` with each module's defaults."""
    from rnnserve.benchmarks import report

    out = Path(args.out)
    for module in modules:
        options = args if own_arguments else _defaults(module, args)
        results = module.run(options)
        stem = module.NAME + ("-quick" if options.quick else "")
        report.write_json(results, out / f"{stem}.json")
        block = module.markdown(results)
        if not options.quick:
            module.chart(results, out / f"{stem}.png")
            block += "\n\n" + report.files_line(out / f"{stem}.png", out / f"{stem}.json")
            report.update_markdown(module.NAME, block)
        print(block)
        print(
            f"\nwrote {out / (stem + '.json')}"
            + ("" if options.quick else f", {out / (stem + '.png')}, {report.MARKDOWN}")
        )


def _defaults(module, args):
    """`args` of `bench all` completed with `module`'s own defaults."""
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    options = parser.parse_args(["--quick"] if args.quick else [])
    options.out = args.out
    return options


def register(subparsers):
    """Adds `bench` and its subcommands to the `rnnserve` parser."""
    from rnnserve.benchmarks.report import RESULTS_DIR

    bench = subparsers.add_parser("bench", help="Benchmark rnnserve against PyTorch and Keras built-ins.")
    benchmarks = bench.add_subparsers(dest="benchmark", metavar="BENCHMARK")
    benchmarks.required = True
    modules = _available()
    for module in modules:
        parser = benchmarks.add_parser(
            module.NAME,
            help=_summary(module),
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(parser)
        parser.add_argument(
            "--out", default=str(RESULTS_DIR), help="Results directory (default: %(default)s)."
        )
        parser.set_defaults(func=lambda args, m=module: _run([m], args))
    every = benchmarks.add_parser("all", help="Run every benchmark above in turn.")
    every.add_argument("--quick", action="store_true", help="Each benchmark's quick mode.")
    every.add_argument("--out", default=str(RESULTS_DIR), help="Results directory (default: %(default)s).")
    every.set_defaults(func=lambda args: _run(modules, args, own_arguments=False))
