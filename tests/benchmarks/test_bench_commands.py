"""Every `rnnserve bench` command runs end to end in its smallest mode and
writes its results (speed itself is measured by the benchmarks, not here)."""

import json

import pytest

from rnnserve.cli import main


def bench(tmp_path, *argv):
    assert main(["bench", *argv, "--quick", "--out", str(tmp_path)]) == 0
    return json.loads((tmp_path / f"{argv[0]}-quick.json").read_text())


def test_generation_times_both_contenders_at_both_batch_sizes(tmp_path):
    results = bench(tmp_path, "generation", "--new-tokens", "4", "--repeats", "1")
    assert [run["batch"] for run in results["runs"]] == [1, 32]
    for run in results["runs"]:
        assert set(run["contenders"]) == {"generate", "step_loop"}
        assert all(c["tokens_per_s"] > 0 for c in run["contenders"].values())


def test_serving_measures_direct_calls_the_server_with_and_without_batching_and_streaming(tmp_path):
    results = bench(tmp_path, "serving", "--requests", "10")
    settings = [(row["setting"], row["clients"]) for row in results["rows"]]
    assert settings == [
        ("direct signature call", 1),
        ("server", 1),
        ("server", 8),
        ("server, batching", 1),
        ("server, batching", 8),
    ]
    for row in results["rows"]:
        assert row["requests"] == (10 * row["clients"])
        assert 0 < row["p50_ms"] <= row["p99_ms"]
    assert results["rows"][2]["server_peak_rss_mib"] > 100
    streaming = results["streaming"]
    assert streaming["streams"]["streams"] == 16
    assert (
        streaming["streams"]["sequential_tokens_per_s"] > 0
        and streaming["streams"]["concurrent_tokens_per_s"] > 0
    )
    assert streaming["decoder"]["concurrent_tokens_per_s"] > 0
    assert [row["batching"] for row in streaming["unary"]] == ["off", "on"]
    assert all(row["tokens_per_s"] > 0 and row["sequences"] == 16 for row in streaming["unary"])
    ttft = streaming["time_to_first_token"]
    assert 0 < ttft["stream_first_piece_p50_ms"] and 0 < ttft["one_token_predict_p50_ms"]


@pytest.mark.parametrize("contenders", ["fused,torch"])
def test_throughput_compares_contenders_from_separate_processes(tmp_path, contenders):
    results = bench(tmp_path, "throughput", "--contenders", contenders, "--repeats", "1")
    [run] = results["runs"]
    assert set(run["train"]) == set(run["infer"]) == {"fused", "torch"}
    assert run["ratios"]["train"]["fused/torch"] > 0
