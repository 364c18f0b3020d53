"""A benchmark run rewrites its own generated block of BENCHMARKS.md and
leaves every other line, the hand-written notes and the other blocks, alone.

Oracle: the committed BENCHMARKS.md, cut at its markers by plain string
search.
"""

import shutil

import pytest

from rnnserve.benchmarks import generation, report, serving, throughput

NAMES = [module.NAME for module in (throughput, generation, serving)]


def markers(name):
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


@pytest.mark.parametrize("name", NAMES)
def test_benchmarks_md_has_one_generated_block_per_benchmark(name):
    text = report.MARKDOWN.read_text()
    begin, end = markers(name)
    assert text.count(begin) == 1 and text.count(end) == 1, f"BENCHMARKS.md needs one {begin} … {end} block"
    assert text.index(begin) < text.index(end)


@pytest.mark.parametrize("name", NAMES)
def test_a_run_replaces_only_its_block(name, tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    shutil.copy(report.MARKDOWN, path)
    before = path.read_text()
    begin, end = markers(name)
    head, rest = before.split(begin)
    tail = rest.split(end)[1]

    report.update_markdown(name, "\nNew table.\n\n| a |\n|---|\n| 1 |\n", path)

    assert path.read_text() == f"{head}{begin}\nNew table.\n\n| a |\n|---|\n| 1 |\n{end}{tail}"


def test_a_block_missing_from_the_file_is_appended(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\nNotes.\n")
    report.update_markdown("generation", "Table.", path)
    assert (
        path.read_text()
        == "# Benchmarks\n\nNotes.\n\n<!-- generation:begin -->\nTable.\n<!-- generation:end -->\n"
    )
