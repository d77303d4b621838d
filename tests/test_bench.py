"""The benchmark (`bench/`): its measuring rules on made-up packet logs, the fake HTTP API it gives the pipeline
engine (driven by the real SDK), its targets computed from summaries, and the harness end to end at N=1 with
one round of each benchmark (WebRTC on both engines, the phone line), where every server starts, a real
caller (aiortc, or Twilio's Media Streams) talks to each and the report has a figure in every column. No speed
is asserted: the targets are the benchmark's to judge (`python bench/run.py`)."""

from __future__ import annotations

import asyncio
import io
import json
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from openai import AsyncOpenAI

from bench import conversation as talk
from bench.caller import Heard
from bench.fake_openai import AUDIO_MS, REPLIES, BenchOpenAIServer, loudness
from bench.metrics import CallLog, Spoken, lost_frames, measure, playout_underruns
from bench.pipeline_metrics import pipeline_figures
from bench.stamps import HeardTurn, SpokenReply
from bench.targets import verdicts
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


def test_a_pause_for_a_burst_is_not_an_underrun_but_a_gap_elsewhere_is() -> None:
    resumed = packets(0.0, [*range(0, 200, 20), *range(700, 900, 20)])  # 500 ms of silence after packet 10
    burst_at_100_ms = [(0.1, 0.25 + 1.0)]

    assert playout_underruns(resumed, pauses=burst_at_100_ms) == (0, 0.0)
    assert playout_underruns(resumed, pauses=[(0.19, 1.34)]) == (0, 0.0)  # the last packet came just before it
    count, starved = playout_underruns(resumed, pauses=[(5.0, 6.0)])  # no burst near it: the network starved it
    assert count == 1 and starved == pytest.approx(0.52 - 0.02 - 0.06)


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


def test_a_call_whose_server_stamps_are_missing_has_no_answers_to_measure_rather_than_an_error() -> None:
    log = CallLog("lost", heard=packets(3.0, [20 * i for i in range(10)]), spoken=[Spoken("question", 0.0, 2.0)])

    figures = measure(log)
    assert (figures.added_ms, figures.voice_to_voice_ms, figures.unheard_answers) == ([], [], 0)


def phone_frames(start: float, arrivals_ms: list[float]) -> list[Heard]:
    """Twilio `media` messages of 40 ms (positions in 48 kHz units, as the phone caller logs them)."""
    return [Heard(start + ms / 1000, i, 1920 * i, VOICE, 0.04) for i, ms in enumerate(arrivals_ms)]


def test_on_the_phone_audio_plays_on_its_own_clock_and_a_clear_drops_what_was_buffered() -> None:
    # The long answer's messages arrive 160 ms ahead of their play time; the caller talks over it at 5.0 and
    # the server's `clear` arrives at 5.12: what had arrived but not played is never heard.
    ahead = [5.0] * 5 + [5 + 40 * i for i in range(1, 53)]
    short = [7 + 40 * i for i in range(75)]
    log = CallLog(
        "phone",
        heard=phone_frames(3.0, ahead) + phone_frames(8.0, short),
        spoken=[Spoken("question", 0.0, 2.0), Spoken("interruption", 5.0, 6.5)],
        answer_starts=[3.0, 8.0],
        detections=[5.1],
        clears=[5.12],
    )

    figures = measure(log)
    assert figures.added_ms == pytest.approx([5, 7])
    assert figures.barge_in_ms == pytest.approx([120])  # silent from the clear, not from the last message's end
    assert figures.barge_in_clear_ms == pytest.approx([120])
    assert (figures.interruptions_cut, figures.interruptions_not_cut) == (1, 0)
    assert (figures.underruns, figures.lost_frames) == (0, 0)


def test_a_burst_is_kept_resumed_or_cut_by_how_much_of_the_answer_was_heard_after_it() -> None:
    question, burst = Spoken("question", 8.0, 9.5), Spoken("burst", 10.8, 10.95)

    def outcome(arrivals_ms: list[float]):
        log = CallLog("burst", heard=packets(10.0, arrivals_ms), spoken=[question, burst], answer_starts=[10.0])
        figures = measure(log, burst_answer_ms=3000)
        return (figures.bursts_kept, figures.bursts_resumed, figures.bursts_cut), figures.burst_pause_ms

    steady = [20 * i for i in range(150)]  # all 3 s of the answer, no pause
    paused = [20 * i for i in range(50)] + [1500 + 20 * i for i in range(100)]  # 500 ms of silence, then the rest
    cut = [20 * i for i in range(55)]  # stopped 100 ms after the burst
    assert outcome(steady) == ((1, 0, 0), [])
    (counts, pauses) = outcome(paused)
    assert counts == (0, 1, 0) and pauses == pytest.approx([500])
    assert outcome(cut) == ((0, 0, 1), [])


def test_a_pipeline_turn_splits_into_stages_and_our_overhead_is_what_the_fakes_did_not_take() -> None:
    question = Spoken("question", 0.0, 1.0)
    log = CallLog(
        "pipeline",
        heard=packets(2.78, [20 * i for i in range(10)]),
        spoken=[question],
        turns=[
            HeardTurn(1.5, "", 900, 100, 700, answered_at=1.75),  # a noise, transcribed as nothing
            HeardTurn(1.8, talk.QUESTION, 3400, 2600, 700, answered_at=2.06),
        ],
        replies=[SpokenReply("long", ["[1] On Friday."], 2.07, 2.37, 2.55, 2.56, 2.76)],
    )

    figures = pipeline_figures(log)
    assert {stage: values for stage, values in figures.stages.items()} == {
        "vad_wait": pytest.approx([800]),
        "stt": pytest.approx([270]),
        "llm": pytest.approx([490]),
        "tts": pytest.approx([220]),
    }
    assert [figures.fixed[stage][0] for stage in figures.fixed] == pytest.approx([700, 260, 480, 200])
    assert [figures.ours[stage][0] for stage in figures.ours] == pytest.approx([100, 10, 10, 20])
    assert figures.overhead_ms == pytest.approx([140])  # 1780 ms voice to voice - 1640 ms silence and fakes
    assert figures.unmatched_turns == 0


def wav_bytes(loud_s: float, silent_s: float, rate: int = 16_000) -> bytes:
    t = np.arange(int(loud_s * rate)) / rate
    pcm = np.concatenate([8000 * np.sin(2 * np.pi * 220 * t), np.zeros(int(silent_s * rate))]).astype(np.int16)
    out = io.BytesIO()
    with wave.open(out, "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(rate)
        file.writeframes(pcm.tobytes())
    return out.getvalue()


def test_the_fake_http_api_tells_conversations_apart_by_their_own_words_and_stamps_every_stage() -> None:
    assert [sum(ms for _, ms in REPLIES[kind]) for kind in ("greeting", "long", "short")] == [
        talk.GREETING_MS,
        talk.LONG_ANSWER_MS,
        talk.SHORT_ANSWER_MS,
    ]
    assert loudness(wav_bytes(1.0, 0.6)) == pytest.approx((1600, 1000, 600))

    async def chat(client: AsyncOpenAI, messages: list[dict[str, Any]]) -> str:
        stream = await client.chat.completions.create(model="m", messages=messages, stream=True)  # type: ignore
        return "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])

    async def call(server: BenchOpenAIServer) -> tuple[list[str], str, bytes]:
        client = AsyncOpenAI(api_key=talk.KEY, base_url=server.base_url)
        system = {"role": "system", "content": "You take bookings (2 rules)."}
        greetings = [await chat(client, [system]), await chat(client, [system])]
        heard = []
        for audio in (wav_bytes(1.2, 0.6), wav_bytes(0.1, 0.6)):  # words, then a noise
            result = await client.audio.transcriptions.create(
                model="t", file=("turn.wav", audio, "audio/wav"), prompt=greetings[0][-200:]
            )
            heard.append(result.text)
        assert heard == [talk.QUESTION, ""]
        messages = [system, {"role": "assistant", "content": greetings[0]}, {"role": "user", "content": heard[0]}]
        answer = await chat(client, messages)
        first = answer.split(". ")[0] + "."
        async with client.audio.speech.with_streaming_response.create(
            model="s", voice="marin", input=first, response_format="pcm"
        ) as response:
            pcm = await response.read()
        await client.close()
        return greetings, answer, pcm

    with BenchOpenAIServer() as server:
        greetings, answer, pcm = asyncio.run(call(server))
        stamps = {conversation.conn: conversation for conversation in server.stamps()}
        problems = server.problems()

    assert greetings[0].startswith("[1] Hello") and greetings[1].startswith("[2] Hello")
    assert answer.startswith("[1] On Friday evening") and answer.count("[1] ") == 3
    assert len(pcm) == 2 * 24 * AUDIO_MS["On Friday evening we have a table for two at six."]
    assert problems == [] and list(stamps) == [1, 2]
    first = stamps[1]
    assert [turn.transcript for turn in first.turns] == [talk.QUESTION, ""]
    assert first.turns[0].loud_ms == pytest.approx(1200) and first.turns[0].trailing_silence_ms == pytest.approx(600)
    assert all(turn.answered_at and turn.answered_at - turn.asked_at >= 0.25 for turn in first.turns)
    greeting, long = first.replies
    assert (greeting.kind, long.kind) == ("greeting", "long") and greeting.speech_at is None
    assert long.asked_at + 0.3 <= long.first_byte_at <= long.sentence_at <= long.speech_asked_at  # type: ignore
    assert long.speech_at is not None and long.speech_at - long.speech_asked_at >= 0.2  # type: ignore
    assert first.answer_starts == [long.speech_at] and stamps[2].answer_starts == []


def summary(calls: int, **figures: Any) -> dict[str, Any]:
    """The parts of a level summary the targets read, with clean defaults."""
    ms = {"p50": 10.0, "p95": 10.0, "max": 10.0, "n": 1}
    base = {
        "calls": calls,
        "calls_ok": calls,
        "underruns": 0,
        "lost_frames": 0,
        "rss_per_call_mb": 2.0,
        "added_ms": ms,
        "barge_in_ms": ms,
        "after_stop_ms": ms,
        "card_usd_per_min": 0.05,
        "burst_pause_ms": ms,
        "bursts": {"kept": 20, "resumed": 0, "cut": 0, "n": 20},
        "interruptions": {"cut": 20, "n": 20},
        "pipeline": {"overhead_ms": ms},
    }
    return base | figures


def test_the_targets_pass_or_miss_from_the_measured_figures() -> None:
    def results(phone_top: dict, pipeline: dict, bursts: dict, live: dict) -> dict[str, bool | None]:
        benchmarks = {
            "webrtc": {
                "levels": [
                    {"calls": 10, "ours": summary(10, bursts=bursts), "floor": summary(10)},
                    {"calls": 20, "ours": summary(20), "floor": summary(20)},
                ]
            },
            "live": {"levels": [{"calls": 10, "ours": summary(10, **live), "floor": summary(10)}]},
            "pipeline": {"levels": [{"calls": 10, "ours": summary(10, pipeline=pipeline)}]},
            "phone": {
                "levels": [
                    {"calls": 20, "ours": summary(20), "floor": summary(20)},
                    {"calls": 40, "ours": summary(40, **phone_top), "floor": summary(40)},
                ]
            },
        }
        return {v.target: v.passed for v in verdicts(benchmarks, [5.0], 1740)}

    good_live = {"after_stop_ms": {"p95": 40.0}}
    bad_live = {"after_stop_ms": {"p95": 80.0}, "underruns": 2}
    good = results({}, {"overhead_ms": {"p95": 40.0}}, {"kept": 18, "resumed": 1, "cut": 1, "n": 20}, good_live)
    bad = results(
        {"underruns": 3}, {"overhead_ms": {"p95": 60.0}}, {"kept": 16, "resumed": 0, "cut": 4, "n": 20}, bad_live
    )
    assert len(good) == 20 and None not in good.values() and all(good.values())
    changed = {target for target in good if good[target] != bad[target]}
    assert changed == {
        "phone line: ≥ 40 concurrent calls with no underruns",
        "pipeline engine: our overhead p95 at N=10 ≤ 50 ms beyond the silence and the fakes' times",
        "150 ms burst mid-answer resumed with no cut in ≥ 95 % of tries, Realtime engine, WebRTC",
        "GPT-Live: caller-side silence after its model stops for a barge-in, p95 at N=10 ≤ 60 ms",
        "GPT-Live: 0 underruns at N=10",
    }
    assert not any(bad[target] for target in changed)


@pytest.mark.timeout(300)
def test_the_quick_benchmark_reports_every_figure_of_every_benchmark(tmp_path: Path, capsys) -> None:
    from bench.run import main

    assert have_browser_tools(), "the caller's speech needs espeak-ng and sox (apt-get install espeak-ng sox)"

    assert main(["--quick", "--out", str(tmp_path)]) == 0

    printed = capsys.readouterr().out
    [report] = tmp_path.glob("bench-*.json")
    assert report.with_suffix(".md").read_text() in printed  # the Markdown table is what was printed
    result = json.loads(report.read_text())
    assert list(result["benchmarks"]) == ["webrtc", "live", "pipeline", "phone"]
    for name, bench in result["benchmarks"].items():
        [level] = bench["levels"]
        targets = ("ours",) if name == "pipeline" else ("ours", "floor")
        assert level["calls"] == 1 and set(level) == {"calls", *targets}
        assert {target: len(starts) for target, starts in bench["startup_s"].items()} == dict.fromkeys(targets, 1)
        for target in targets:
            check_summary(name, target, level[target])
    assert "| 1 | 1/1 · 1/1 |" in printed and "| 1 | 1/1 |" in printed and "## Targets" in printed
    assert len(result["targets"]) == 19
    assert all(target["passed"] in (True, False, None) and target["measured"] for target in result["targets"])


def check_summary(bench: str, target: str, summary: dict[str, Any]) -> None:
    """One round of one call: every figure present and sane (not that it meets its target)."""
    where = f"{bench} {target}"
    assert summary["calls_ok"] == 1, (where, summary["failures"])
    assert not summary["fake_problems"], where
    for figure, count in (("added_ms", 2), ("voice_to_voice_ms", 2), ("barge_in_ms", 1)):
        values = summary[figure]
        assert values["n"] == count, (where, figure)  # one round: two answers, one of them cut
        assert all(isinstance(values[q], float) and values[q] > 0 for q in ("p50", "p95", "max")), (where, figure)
    assert summary["bursts"]["n"] == 1 and summary["interruptions"]["n"] == 1, where
    assert summary["bursts"]["kept"] + summary["bursts"]["resumed"] + summary["bursts"]["cut"] == 1, where
    assert summary["barge_in_detect_ms"]["n"] == (0 if bench == "pipeline" else 1), where
    assert summary["barge_in_clear_ms"]["n"] == (1 if bench == "phone" else 0), where
    assert summary["after_stop_ms"]["n"] == (1 if (bench, target) == ("live", "ours") else 0), where
    if target == "ours" and bench in ("webrtc", "live"):
        assert summary["card_usd_per_min"] > 0, where  # what the card showed, per minute of the call
    assert isinstance(summary["underruns"], int) and isinstance(summary["lost_frames"], int), where
    for figure in ("server_cpu_percent", "page_served_s", "harness_cpu_percent"):
        assert isinstance(summary[figure], float) and summary[figure] > 0, (where, figure)
    assert isinstance(summary["rss_per_call_mb"], float) and summary["rss_per_call_mb"] >= 0, where
    assert isinstance(summary["other_cpu_percent"], float) and summary["other_cpu_percent"] >= 0, where
    split = summary["pipeline"]
    if bench != "pipeline":
        assert split is None, where
        return
    assert split["unmatched_turns"] == 0
    for part in ("stages_ms", "fixed_ms", "ours_ms"):
        assert all(values["n"] == 2 for values in split[part].values()), part
    assert all(values["p50"] > 0 for values in split["stages_ms"].values())
    assert split["fixed_ms"]["vad_wait"]["p50"] > 0  # the silence the VAD waited for, read from the upload
    assert split["overhead_ms"]["n"] == 2 and isinstance(split["overhead_ms"]["p50"], float)
