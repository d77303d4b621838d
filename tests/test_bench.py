"""The benchmark (`bench/`): its measuring rules on made-up packet logs, and the harness end to end at N=1
with one round, where both servers start, a real WebRTC caller talks to each and the report has a figure in
every column. No speed is asserted: the targets are the benchmark's to judge (`python bench/run.py`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.caller import Heard
from bench.metrics import CallLog, Spoken, lost_frames, measure, playout_underruns
from tests.browser import have_browser_tools

VOICE, SILENCE = -18.0, float("-inf")


def packets(start: float, arrivals_ms: list[float], first_seq: int = 0, dbfs: float = VOICE) -> list[Heard]:
    """Packets 20 ms of RTP time apart (48 kHz clock), arriving `arrivals_ms` after `start`."""
    return [Heard(start + ms / 1000, first_seq + i, 960 * i, dbfs) for i, ms in enumerate(arrivals_ms)]


def test_a_packet_later_than_the_playout_buffer_is_one_underrun_and_playback_resumes_from_it() -> None:
    steady = packets(0.0, [20 * i for i in range(10)])
    late = packets(0.0, [0, 20, 40, 150, 170, 190])  # 90 ms late: 30 ms past a 60 ms buffer

    assert playout_underruns(steady) == (0, 0.0)
    count, starved = playout_underruns(late)
    assert count == 1 and starved == pytest.approx(0.030)
    assert lost_frames(steady) == 0 and lost_frames(steady[:3] + steady[5:]) == 2


def test_a_round_gives_added_latency_voice_to_voice_and_barge_in_from_the_stamps() -> None:
    question, interruption = Spoken("question", 0.0, 2.0), Spoken("interruption", 5.0, 6.5)
    log = CallLog(
        "call",
        # The long answer's first packet arrives 5 ms after the server handed it over at 3.0; the caller talks
        # over it at 5.0 and its last packet arrives at 5.165. The short answer is handed over at 8.0.
        heard=packets(3.0, [5 + 20 * i for i in range(109)]) + packets(8.0, [7 + 20 * i for i in range(50)], 109),
        spoken=[question, interruption],
        answer_starts=[3.0, 8.0],
        detections=[0.1, 5.15],
    )

    figures = measure(log)
    assert figures.added_ms == pytest.approx([5, 7])
    assert figures.voice_to_voice_ms == pytest.approx([1005, 1507])
    assert figures.barge_in_ms == pytest.approx([185])  # the last packet's arrival, + the 20 ms it plays
    assert figures.barge_in_detect_ms == pytest.approx([150])
    assert (figures.underruns, figures.lost_frames, figures.missed_barge_ins) == (0, 0, 0)


@pytest.mark.timeout(180)
def test_the_quick_benchmark_reports_every_figure_for_both_servers(tmp_path: Path, capsys) -> None:
    from bench.run import main

    assert have_browser_tools(), "the caller's speech needs espeak-ng and sox (apt-get install espeak-ng sox)"

    assert main(["--quick", "--out", str(tmp_path)]) == 0

    printed = capsys.readouterr().out
    [report] = tmp_path.glob("bench-*.json")
    assert report.with_suffix(".md").read_text() in printed  # the Markdown table is what was printed
    result = json.loads(report.read_text())
    [level] = result["levels"]
    assert level["calls"] == 1
    for target in ("ours", "floor"):
        summary = level[target]
        assert summary["calls_ok"] == 1, summary["failures"]
        for figure, quantiles in (
            ("added_ms", ("p50", "p95", "max")),
            ("barge_in_ms", ("p50", "p95")),
            ("voice_to_voice_ms", ("p50", "p95")),
        ):
            assert all(isinstance(summary[figure][q], float) and summary[figure][q] > 0 for q in quantiles), figure
        assert summary["added_ms"]["n"] == 2 and summary["barge_in_ms"]["n"] == 1  # one round: two answers, one cut
        assert isinstance(summary["underruns"], int) and isinstance(summary["lost_frames"], int)
        for figure in ("server_cpu_percent", "rss_per_call_mb", "page_served_s", "harness_cpu_percent"):
            assert isinstance(summary[figure], float) and summary[figure] > 0, figure
        assert not summary["fake_problems"]
    assert [len(result["startup_s"][target]) for target in ("ours", "floor")] == [1, 1]
    assert len(result["targets"]) == 5
    assert "| 1 | 1/1 · 1/1 |" in printed and "## Targets" in printed
