"""Per-level summaries of both targets, the issue's targets as pass/miss, and the Markdown table.

A level is `{"calls": N, "ours": summary, "floor": summary}`; a summary pools the figures of all calls
of that target at that level (`summarise`). The JSON report is these dicts as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

from bench.harness import LevelRun
from bench.metrics import CallFigures, measure, percentile

MB = 1024 * 1024
SATURATED_OK_SHARE = 0.5  # fewer calls than this share got through: the level is saturated
SATURATED_ADDED_P95_MS = 1000.0  # or the p95 added latency is over a second
TARGETS = ("ours", "floor")

Level = dict[str, Any]
Summary = dict[str, Any]


def _spread(values: list[float]) -> dict[str, float | int | None]:
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


def summarise(run: LevelRun) -> Summary:
    """One target at one level: pooled call figures, the calls that failed, the server's load."""
    figures = [measure(log) for log in run.logs]
    pooled = _pooled(figures)
    ok = sum(1 for log in run.logs if log.failure is None)
    grown_mb = ((run.peak_rss_bytes or 0) - (run.idle_rss_bytes or 0)) / MB
    cpu = run.server_cpu_percent
    added_p95 = percentile(pooled.added_ms, 95)
    return {
        "calls": run.calls,
        "calls_ok": ok,
        "failures": sorted({log.failure for log in run.logs if log.failure}),
        "added_ms": _spread(pooled.added_ms),
        "voice_to_voice_ms": _spread(pooled.voice_to_voice_ms),
        "barge_in_ms": _spread(pooled.barge_in_ms),
        "barge_in_detect_ms": _spread(pooled.barge_in_detect_ms),
        "unheard_answers": pooled.unheard_answers,
        "missed_barge_ins": pooled.missed_barge_ins,
        "underruns": pooled.underruns,
        "starved_ms": round(pooled.starved_ms, 1),
        "lost_frames": pooled.lost_frames,
        "server_cpu_percent": cpu,
        "server_cpu_percent_per_call": cpu / run.calls if cpu is not None else None,
        "harness_cpu_percent": run.harness_cpu_percent,
        "harness_lag_ms": _spread([1000 * lag for lag in run.harness_lag_s]),
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


# ---- targets ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    target: str
    measured: str
    passed: bool | None  # None: not measured in this run


def _at(levels: list[Level], calls: int, target: str) -> Summary | None:
    return next((level[target] for level in levels if level["calls"] == calls and target in level), None)


def _p95(summary: Summary | None, figure: str) -> float | None:
    return summary[figure]["p95"] if summary else None


def _clean_up_to(levels: list[Level], target: str) -> int:
    """The largest level where every call got through with no gap in the audio and p95 added latency ≤ 50 ms."""
    clean = [
        level["calls"]
        for level in levels
        if target in level
        and level[target]["calls_ok"] == level["calls"]
        and level[target]["underruns"] == 0
        and level[target]["lost_frames"] == 0
        and (_p95(level[target], "added_ms") or float("inf")) <= 50
    ]
    return max(clean, default=0)


def verdicts(levels: list[Level], startups_s: list[float]) -> list[Verdict]:
    """The five targets of issue 7: what was measured, and pass (True), miss (False) or not run (None)."""
    out = []
    name = "added latency above floor, p95 at N=10 ≤ 20 ms"
    ours, floor = _p95(_at(levels, 10, "ours"), "added_ms"), _p95(_at(levels, 10, "floor"), "added_ms")
    if ours is not None and floor is not None:
        out.append(Verdict(name, f"{ours - floor:+.0f} ms ({ours:.0f} vs floor {floor:.0f})", ours - floor <= 20))
    else:
        out.append(Verdict(name, "N=10 not run", None))

    name = "barge-in caller-side silence p95 ≤ 150 ms"
    upto10 = [level["calls"] for level in levels if level["calls"] <= 10 and "ours" in level]
    at = max(upto10, default=None)
    ours = _p95(_at(levels, at, "ours"), "barge_in_ms") if at else None
    if ours is not None:
        floor = _p95(_at(levels, at, "floor"), "barge_in_ms")
        versus = f", floor {floor:.0f}" if floor is not None else ""
        out.append(Verdict(name, f"{ours:.0f} ms at N={at}{versus}", ours <= 150))
    else:
        out.append(Verdict(name, "not measured", None))

    name = "≥ 20 concurrent calls with no underruns and p95 added latency ≤ 50 ms"
    ours_clean, floor_clean = _clean_up_to(levels, "ours"), _clean_up_to(levels, "floor")
    out.append(Verdict(name, f"clean up to N={ours_clean} (floor: N={floor_clean})", ours_clean >= 20))

    name = "memory per call ≤ 40 MB"
    measured = [level for level in levels if (level.get("ours") or {}).get("rss_per_call_mb") is not None]
    if measured:
        mb, at = measured[-1]["ours"]["rss_per_call_mb"], measured[-1]["calls"]
        out.append(Verdict(name, f"{mb:.1f} MB at N={at}", mb <= 40))
    else:
        out.append(Verdict(name, "not measured", None))

    name = "page served ≤ 10 s after start"
    if startups_s:
        out.append(Verdict(name, f"{max(startups_s):.1f} s (worst of {len(startups_s)} starts)", max(startups_s) <= 10))
    else:
        out.append(Verdict(name, "not measured", None))
    return out


# ---- Markdown ------------------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f}"


def _num(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _triple(spread: dict[str, Any]) -> str:
    return f"{_ms(spread['p50'])} / {_ms(spread['p95'])} / {_ms(spread['max'])}"


def _pair(spread: dict[str, Any]) -> str:
    return f"{_ms(spread['p50'])} / {_ms(spread['p95'])}"


def _above(level: Level) -> str:
    ours, floor = _p95(level.get("ours"), "added_ms"), _p95(level.get("floor"), "added_ms")
    if ours is None or floor is None:
        return "–"
    return f"{ours - floor:+.0f} ms, ×{ours / floor:.1f}" if floor > 0 else f"{ours - floor:+.0f} ms"


Cell = Callable[[Summary], str]

LATENCY_COLUMNS: list[tuple[str, Cell]] = [
    ("calls ok", lambda s: f"{s['calls_ok']}/{s['calls']}"),
    ("added latency p50 / p95 / max", lambda s: _triple(s["added_ms"])),
    ("barge-in silence p50 / p95", lambda s: _pair(s["barge_in_ms"])),
    ("voice-to-voice p50 / p95", lambda s: _pair(s["voice_to_voice_ms"])),
]
LOAD_COLUMNS: list[tuple[str, Cell]] = [
    ("underruns (starved ms)", lambda s: f"{s['underruns']} ({s['starved_ms']:.0f})"),
    ("lost frames", lambda s: str(s["lost_frames"])),
    ("server CPU %", lambda s: _num(s["server_cpu_percent"])),
    ("CPU % per call", lambda s: _num(s["server_cpu_percent_per_call"], 1)),
    ("RSS per call (MB)", lambda s: _num(s["rss_per_call_mb"], 1)),
    ("idle → peak RSS (MB)", lambda s: f"{s['idle_rss_mb']:.0f} → {s['peak_rss_mb']:.0f}"),
    ("harness CPU %", lambda s: _num(s["harness_cpu_percent"])),
    ("harness loop lag p95 / max", lambda s: f"{_ms(s['harness_lag_ms']['p95'])} / {_ms(s['harness_lag_ms']['max'])}"),
]


def _table(levels: list[Level], columns: list[tuple[str, Cell]], extra: tuple[str, Callable[[Level], str]] | None):
    """One row per level, each cell `ours · floor`; `extra` is one more column computed from the whole level."""
    names = [name for name, _ in columns] + ([extra[0]] if extra else [])
    rows = ["| N | " + " | ".join(names) + " |", "|---:|" + "---|" * len(names)]
    for level in levels:
        cells = [" · ".join(cell(level[t]) if t in level else "–" for t in TARGETS) for _, cell in columns]
        rows.append(f"| {level['calls']} | " + " | ".join(cells + ([extra[1](level)] if extra else [])) + " |")
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
            if summary["fake_problems"]:
                notes.append(f"{where} the fake noticed: {'; '.join(summary['fake_problems'][:3])}")
            if summary["saturated"]:
                notes.append(f"{where} saturated (under half the calls got through, or p95 added latency over 1 s)")
    return notes


def _setup(meta: dict[str, Any]) -> str:
    return (
        f"Each call: greeting, then {meta['rounds']} round(s) of question → {meta['long_ms']} ms answer, talked "
        f"over after {meta['barge_after_s']} s of it → {meta['short_ms']} ms answer. Model think time "
        f"{meta['think_ms']} ms, audio sent at {1 / meta['pace']:.0f}× real time. **ours** = `python app.py "
        "--server` with the fake Realtime server; **floor** = `bench/floor_app.py` (fastrtc alone). Every cell is "
        "`ours · floor`; times in ms."
    )


def markdown(result: dict[str, Any]) -> str:
    """The report: what was run, latency and load per level, start-up, notes, targets."""
    meta, levels = result["meta"], result["levels"]
    lines = [
        f"# Voicebot benchmark, {meta['started_at']}",
        "",
        f"{meta['machine']}. `{meta['command']}`.",
        "",
        _setup(meta),
        "",
        "## Latency",
        "",
        *_table(levels, LATENCY_COLUMNS, ("ours above floor (p95)", _above)),
        "",
        "## Load",
        "",
        *_table(levels, LOAD_COLUMNS, None),
        "",
        "## Start-up (process start → `GET /` answers 200)",
        "",
    ]
    for target, starts in result["startup_s"].items():
        if starts:
            lines.append(
                f"- {target}: p50 {percentile(starts, 50):.1f} s, max {max(starts):.1f} s ({len(starts)} starts)"
            )
    if notes := _notes(levels):
        lines += ["", "## Notes", "", *notes]
    lines += ["", "## Targets", "", "| target | measured | result |", "|---|---|---|"]
    for verdict in result["targets"]:
        lines.append(f"| {verdict['target']} | {verdict['measured']} | {_RESULT[verdict['passed']]} |")
    return "\n".join(lines) + "\n"


_RESULT = {True: "PASS", False: "MISS", None: "not run"}
