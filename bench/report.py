"""Per-level summaries of every target, and the Markdown report of a whole run.

A benchmark's levels are `{"calls": N, "ours": summary, "floor": summary}`; a summary pools the figures of
all calls of that target at that level (`summarise`). The JSON report is these dicts as they are; the
Markdown shows one section per benchmark (cells `ours · floor`), then the targets (`bench.targets`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, fields
from typing import Any

from bench import conversation as talk
from bench.harness import LevelRun
from bench.metrics import CallFigures, measure, percentile
from bench.pipeline_metrics import STAGES, PipelineFigures, pipeline_figures

MB = 1024 * 1024
SATURATED_OK_SHARE = 0.5  # fewer calls than this share got through: the level is saturated
SATURATED_ADDED_P95_MS = 1000.0  # or the p95 added latency is over a second
BUSY_MACHINE_PERCENT = 20.0  # other processes took this much CPU during a level: say its figures may suffer
TARGETS = ("ours", "floor")
TITLES = {
    "webrtc": "WebRTC, Realtime engine (`app.py --server` with the fake Realtime server) · fastrtc floor",
    "live": "WebRTC, GPT-Live engine (`VOICE_ENGINE=live`, the fake Live server) · fastrtc floor",
    "pipeline": "WebRTC, pipeline engine (`VOICE_ENGINE=pipeline`, the fake HTTP API); the floor is the fakes' times",
    "phone": "Phone line, Realtime engine (Twilio Media Streams to `/telephone/handler`) · fastrtc's phone floor",
}

Level = dict[str, Any]
Summary = dict[str, Any]


def spread(values: list[float]) -> dict[str, float | int | None]:
    return {
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "max": max(values, default=None),
        "n": len(values),
    }


def _pooled(figures: list[CallFigures]) -> CallFigures:
    pooled = CallFigures()
    for call in figures:
        for field in fields(CallFigures):
            mine, theirs = getattr(pooled, field.name), getattr(call, field.name)
            setattr(pooled, field.name, mine + theirs)  # lists are joined, counts added
    return pooled


def _pipeline(logs: list[Any]) -> dict[str, Any] | None:
    """The pooled stage split of a pipeline level (None for the other engines)."""
    if not any(log.replies for log in logs):
        return None
    pooled = PipelineFigures()
    for figures in (pipeline_figures(log) for log in logs):
        for stage in STAGES:
            for kind in ("stages", "fixed", "ours"):
                getattr(pooled, kind)[stage] += getattr(figures, kind)[stage]
        pooled.overhead_ms += figures.overhead_ms
        pooled.unmatched_turns += figures.unmatched_turns
    return {
        "stages_ms": {stage: spread(pooled.stages[stage]) for stage in STAGES},
        "fixed_ms": {stage: spread(pooled.fixed[stage]) for stage in STAGES},
        "ours_ms": {stage: spread(pooled.ours[stage]) for stage in STAGES},
        "overhead_ms": spread(pooled.overhead_ms),
        "unmatched_turns": pooled.unmatched_turns,
    }


def _card_cost_per_minute(logs: list[Any]) -> float | None:
    """What the calls' cards showed, per minute of talk (None where no card was read)."""
    costed = [log for log in logs if log.cost_usd is not None and log.card_s]
    minutes = sum(log.card_s for log in costed) / 60
    return sum(log.cost_usd for log in costed) / minutes if minutes else None


def summarise(run: LevelRun) -> Summary:
    """One target at one level: pooled call figures, the calls that failed, the server's load."""
    figures = [measure(log) for log in run.logs]
    pooled = _pooled(figures)
    ok = sum(1 for log in run.logs if log.failure is None)
    grown_mb = ((run.peak_rss_bytes or 0) - (run.idle_rss_bytes or 0)) / MB
    cpu = run.server_cpu_percent
    added_p95 = percentile(pooled.added_ms, 95)
    tries = pooled.bursts_kept + pooled.bursts_resumed + pooled.bursts_cut
    return {
        "calls": run.calls,
        "calls_ok": ok,
        "failures": sorted({log.failure for log in run.logs if log.failure}),
        "added_ms": spread(pooled.added_ms),
        "voice_to_voice_ms": spread(pooled.voice_to_voice_ms),
        "barge_in_ms": spread(pooled.barge_in_ms),
        "barge_in_detect_ms": spread(pooled.barge_in_detect_ms),
        "barge_in_clear_ms": spread(pooled.barge_in_clear_ms),
        "after_stop_ms": spread(pooled.after_stop_ms),
        "card_usd_per_min": _card_cost_per_minute(run.logs),
        "bursts": {"kept": pooled.bursts_kept, "resumed": pooled.bursts_resumed, "cut": pooled.bursts_cut, "n": tries},
        "burst_pause_ms": spread(pooled.burst_pause_ms),
        "interruptions": {
            "cut": pooled.interruptions_cut,
            "n": pooled.interruptions_cut + pooled.interruptions_not_cut,
        },
        "pipeline": _pipeline(run.logs),
        "unheard_answers": pooled.unheard_answers,
        "missed_barge_ins": pooled.missed_barge_ins,
        "underruns": pooled.underruns,
        "starved_ms": round(pooled.starved_ms, 1),
        "lost_frames": pooled.lost_frames,
        "server_cpu_percent": cpu,
        "server_cpu_percent_per_call": cpu / run.calls if cpu is not None else None,
        "harness_cpu_percent": run.harness_cpu_percent,
        "other_cpu_percent": run.other_cpu_percent,
        "harness_lag_ms": spread([1000 * lag for lag in run.harness_lag_s]),
        "idle_rss_mb": (run.idle_rss_bytes or 0) / MB,
        "peak_rss_mb": (run.peak_rss_bytes or 0) / MB,
        "rss_per_call_mb": grown_mb / run.calls if run.peak_rss_bytes else None,
        "page_served_s": run.page_served_s,
        "talk_s": run.talk_s,
        "fake_problems": run.fake_problems,
        "error": run.error,
        "saturated": bool(
            run.error or ok < SATURATED_OK_SHARE * run.calls or added_p95 is None or added_p95 > SATURATED_ADDED_P95_MS
        ),
        "per_call": [
            {"webrtc_id": log.webrtc_id, "failure": log.failure, **asdict(call)}
            for log, call in zip(run.logs, figures, strict=True)
        ],
    }


# ---- Markdown ------------------------------------------------------------------------------------------


def ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f}"


def _num(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _triple(values: dict[str, Any]) -> str:
    return f"{ms(values['p50'])} / {ms(values['p95'])} / {ms(values['max'])}"


def _pair(values: dict[str, Any]) -> str:
    return f"{ms(values['p50'])} / {ms(values['p95'])}"


def _above(level: Level) -> str:
    ours, floor = (level.get(t, {}).get("added_ms", {}).get("p95") for t in ("ours", "floor"))
    if ours is None or floor is None:
        return "–"
    return f"{ours - floor:+.0f} ms, ×{ours / floor:.1f}" if floor > 0 else f"{ours - floor:+.0f} ms"


Cell = Callable[[Summary], str]

LATENCY_COLUMNS: list[tuple[str, Cell]] = [
    ("calls ok", lambda s: f"{s['calls_ok']}/{s['calls']}"),
    ("added latency p50 / p95 / max", lambda s: _triple(s["added_ms"])),
    ("barge-in silence p50 / p95", lambda s: _pair(s["barge_in_ms"])),
    ("voice-to-voice p50 / p95", lambda s: _pair(s["voice_to_voice_ms"])),
    ("burst kept / resumed / cut", lambda s: "{kept} / {resumed} / {cut}".format(**s["bursts"])),
    ("real interruptions cut", lambda s: "{cut}/{n}".format(**s["interruptions"])),
]
PHONE_COLUMNS: list[tuple[str, Cell]] = [("barge-in to `clear` p50 / p95", lambda s: _pair(s["barge_in_clear_ms"]))]
LIVE_COLUMNS: list[tuple[str, Cell]] = [
    ("audible after the model stopped p50 / p95", lambda s: _pair(s["after_stop_ms"])),
    ("card $ per minute", lambda s: "–" if s["card_usd_per_min"] is None else f"{s['card_usd_per_min']:.4f}"),
]
COST_COLUMNS: list[tuple[str, Cell]] = [LIVE_COLUMNS[1]]
LOAD_COLUMNS: list[tuple[str, Cell]] = [
    ("underruns (starved ms)", lambda s: f"{s['underruns']} ({s['starved_ms']:.0f})"),
    ("lost frames", lambda s: str(s["lost_frames"])),
    ("server CPU %", lambda s: _num(s["server_cpu_percent"])),
    ("CPU % per call", lambda s: _num(s["server_cpu_percent_per_call"], 1)),
    ("RSS per call (MB)", lambda s: _num(s["rss_per_call_mb"], 1)),
    ("idle → peak RSS (MB)", lambda s: f"{s['idle_rss_mb']:.0f} → {s['peak_rss_mb']:.0f}"),
    ("harness CPU %", lambda s: _num(s["harness_cpu_percent"])),
    ("other processes CPU %", lambda s: _num(s["other_cpu_percent"])),
    ("harness loop lag p95 / max", lambda s: f"{ms(s['harness_lag_ms']['p95'])} / {ms(s['harness_lag_ms']['max'])}"),
]


def _split(cell: Callable[[dict[str, Any]], str]) -> Cell:
    """A cell of the pipeline's stage split ("–" for a level that has none, e.g. one that failed)."""
    return lambda s: cell(s["pipeline"]) if s["pipeline"] else "–"


def _stage(stage: str) -> Cell:
    return _split(lambda split: f"{ms(split['stages_ms'][stage]['p50'])} ({ms(split['ours_ms'][stage]['p50'])})")


PIPELINE_COLUMNS: list[tuple[str, Cell]] = [
    ("voice-to-voice p50 / p95", lambda s: _pair(s["voice_to_voice_ms"])),
    *(
        (f"{name} p50 (ours)", _stage(stage))
        for name, stage in zip(("VAD wait", "STT", "LLM", "TTS"), STAGES, strict=True)
    ),
    ("silence + fakes p50", _split(lambda split: ms(sum(v["p50"] or 0 for v in split["fixed_ms"].values())))),
    ("our overhead p50 / p95 / max", _split(lambda split: _triple(split["overhead_ms"]))),
]


def _table(levels: list[Level], columns: list[tuple[str, Cell]], targets: tuple[str, ...], extra: bool) -> list[str]:
    """One row per level, each cell `ours · floor`; `extra` adds ours above floor (p95 added latency)."""
    names = [name for name, _ in columns] + (["ours above floor (p95)"] if extra else [])
    rows = ["| N | " + " | ".join(names) + " |", "|---:|" + "---|" * len(names)]
    for level in levels:
        cells = [" · ".join(cell(level[t]) if t in level else "–" for t in targets) for _, cell in columns]
        rows.append(f"| {level['calls']} | " + " | ".join(cells + ([_above(level)] if extra else [])) + " |")
    return rows


def _notes(levels: list[Level]) -> list[str]:
    """Failed calls, saturation and anything the fake objected to, so that no bad cell goes unexplained."""
    notes = []
    for level in levels:
        for target in TARGETS:
            summary = level.get(target)
            if not summary:
                continue
            where = f"- N={level['calls']} {target}:"
            if summary["error"]:
                notes.append(f"{where} {summary['error']}")
            if summary["failures"]:
                notes.append(
                    f"{where} {summary['calls'] - summary['calls_ok']} call(s) failed: {'; '.join(summary['failures'])}"
                )
            if summary["missed_barge_ins"] or summary["unheard_answers"]:
                notes.append(
                    f"{where} {summary['missed_barge_ins']} interruption(s) came after the answer had ended, "
                    f"{summary['unheard_answers']} answer(s) never heard"
                )
            if (summary["pipeline"] or {}).get("unmatched_turns"):
                notes.append(f"{where} {summary['pipeline']['unmatched_turns']} turn(s) with no complete stamps")
            if (summary["other_cpu_percent"] or 0) > BUSY_MACHINE_PERCENT:
                notes.append(
                    f"{where} other processes on the machine took {summary['other_cpu_percent']:.0f} % CPU while the "
                    "calls talked: these figures may be disturbed"
                )
            if summary["fake_problems"]:
                notes.append(f"{where} the fake noticed: {'; '.join(summary['fake_problems'][:3])}")
            if summary["saturated"]:
                notes.append(f"{where} saturated (under half the calls got through, or p95 added latency over 1 s)")
    return notes


def _setup(meta: dict[str, Any]) -> str:
    said = meta["utterance_ms"]
    return (
        f"Each call: greeting, then {meta['rounds']} round(s) of question ({said['question']} ms) → "
        f"{meta['long_ms']} ms answer, talked over after {meta['barge_after_s']} s of it ({said['interruption']} ms "
        f"of speech) → {meta['short_ms']} ms answer, with a {meta['burst_ms']} ms burst after "
        f"{meta['burst_after_s']} s of it. Realtime model think time {meta['think_ms']} ms; the pipeline's fakes: "
        f"speech-to-text {meta['stt_ms']} ms, first token {meta['ttft_ms']} ms, speech's first byte "
        f"{meta['ttfb_ms']} ms; audio sent at {1 / meta['pace']:.0f}× real time. Times in ms."
    )


def _floor_transport(benchmarks: dict[str, Any], levels: list[Level]) -> list[str]:
    """For the pipeline: what WebRTC itself costs, both ways, in the floor at the same N (its voice to voice
    beyond its fixed silence and think time), since the uplink is inside our VAD wait."""
    fixed_ms = talk.SILENCE_MS + 1000 * talk.THINK_S
    floors = {
        level["calls"]: level["floor"] for level in benchmarks.get("webrtc", {}).get("levels", []) if "floor" in level
    }
    shares = [
        f"N={level['calls']}: {ms(v2v - fixed_ms)}"
        for level in levels
        if (v2v := (floors.get(level["calls"]) or {}).get("voice_to_voice_ms", {}).get("p50")) is not None
    ]
    if not shares:
        return []
    return [
        "For comparison, the WebRTC floor's voice to voice beyond its fixed "
        f"{fixed_ms:.0f} ms (silence and think time), p50 — the transport both ways, uplink mostly: "
        + ", ".join(shares)
        + ".",
        "",
    ]


def _section(name: str, bench: dict[str, Any], benchmarks: dict[str, Any]) -> list[str]:
    levels = bench["levels"]
    targets = tuple(t for t in TARGETS if any(t in level for level in levels))
    extra = {"phone": PHONE_COLUMNS, "live": LIVE_COLUMNS, "webrtc": COST_COLUMNS}
    latency = LATENCY_COLUMNS + extra.get(name, [])
    lines = [f"## {TITLES[name]}", "", *_table(levels, latency, targets, "floor" in targets), ""]
    if name == "pipeline":
        lines += ["Voice to voice by stage: each stage's p50 (our part of it in brackets).", ""]
        lines += [*_table(levels, PIPELINE_COLUMNS, ("ours",), False), "", *_floor_transport(benchmarks, levels)]
    lines += ["Load:", "", *_table(levels, LOAD_COLUMNS, targets, False), ""]
    for target, starts in bench["startup_s"].items():
        if starts:
            lines.append(
                f"- start-up of {target} (process start → `GET /` answers 200): p50 {percentile(starts, 50):.1f} s, "
                f"max {max(starts):.1f} s ({len(starts)} starts)"
            )
    if notes := _notes(levels):
        lines += ["", "Notes:", "", *notes]
    return [*lines, ""]


def markdown(result: dict[str, Any]) -> str:
    """The report: what was run, each benchmark's latency, stages and load per level, then the targets."""
    meta = result["meta"]
    lines = [f"# Voicebot benchmark, {meta['started_at']}", "", f"{meta['machine']}. `{meta['command']}`.", ""]
    lines += [_setup(meta), ""]
    for name, bench in result["benchmarks"].items():
        lines += _section(name, bench, result["benchmarks"])
    lines += ["## Targets", "", "| target | measured | result |", "|---|---|---|"]
    for verdict in result["targets"]:
        lines.append(f"| {verdict['target']} | {verdict['measured']} | {_RESULT[verdict['passed']]} |")
    return "\n".join(lines) + "\n"


_RESULT = {True: "PASS", False: "MISS", None: "not run"}
