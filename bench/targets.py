"""The issues' targets, each computed as pass or miss from the run's own figures (never assumed), or "not run".

Issue 7 set the first five, on the Realtime engine over WebRTC (kept, so a regression shows); the later
issue added barge-in on both engines and the phone line, false interruptions, the phone line's capacity
and added latency, and the pipeline engine's overhead. Where a floor ran in the same run, its figure is
shown next to ours.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Level = dict[str, Any]
Summary = dict[str, Any]
Benchmarks = dict[str, dict[str, Any]]
ENGINES = {
    "webrtc": "Realtime engine, WebRTC",
    "live": "GPT-Live engine, WebRTC",
    "pipeline": "pipeline engine, WebRTC",
    "phone": "phone line",
}
RESUMED_SHARE = 0.95


@dataclass(frozen=True)
class Verdict:
    target: str
    measured: str
    passed: bool | None  # None: not measured in this run


def _levels(benchmarks: Benchmarks, bench: str) -> list[Level]:
    return benchmarks.get(bench, {}).get("levels", [])


def _at(levels: list[Level], calls: int | None, target: str) -> Summary | None:
    return next((level[target] for level in levels if level["calls"] == calls and target in level), None)


def _p95(summary: Summary | None, figure: str) -> float | None:
    return summary[figure]["p95"] if summary else None


def _clean_up_to(levels: list[Level], target: str, added_p95_ms: float | None) -> int:
    """The largest level where every call got through with no gap in the audio (and, if given, p95 added
    latency at most `added_p95_ms`)."""
    clean = [
        level["calls"]
        for level in levels
        if target in level
        and level[target]["calls_ok"] == level["calls"]
        and level[target]["underruns"] == 0
        and level[target]["lost_frames"] == 0
        and (added_p95_ms is None or (_p95(level[target], "added_ms") or float("inf")) <= added_p95_ms)
    ]
    return max(clean, default=0)


def _versus(floor: float | None) -> str:
    return f", floor {floor:.0f}" if floor is not None else ""


def _issue_7(benchmarks: Benchmarks, startups_s: list[float]) -> list[Verdict]:
    """The Realtime engine over WebRTC, as issue 7 had it."""
    levels, out = _levels(benchmarks, "webrtc"), []
    name = "added latency above floor, p95 at N=10 ≤ 20 ms"
    ours, floor = _p95(_at(levels, 10, "ours"), "added_ms"), _p95(_at(levels, 10, "floor"), "added_ms")
    if ours is not None and floor is not None:
        out.append(Verdict(name, f"{ours - floor:+.0f} ms ({ours:.0f} vs floor {floor:.0f})", ours - floor <= 20))
    else:
        out.append(Verdict(name, "N=10 not run", None))

    name = "barge-in caller-side silence p95 ≤ 150 ms"
    at = max((level["calls"] for level in levels if level["calls"] <= 10 and "ours" in level), default=None)
    ours = _p95(_at(levels, at, "ours"), "barge_in_ms")
    if ours is not None:
        floor = _p95(_at(levels, at, "floor"), "barge_in_ms")
        out.append(Verdict(name, f"{ours:.0f} ms at N={at}{_versus(floor)}", ours <= 150))
    else:
        out.append(Verdict(name, "not measured", None))

    name = "≥ 20 concurrent calls with no underruns and p95 added latency ≤ 50 ms"
    if levels:
        ours_clean, floor_clean = _clean_up_to(levels, "ours", 50), _clean_up_to(levels, "floor", 50)
        out.append(Verdict(name, f"clean up to N={ours_clean} (floor: N={floor_clean})", ours_clean >= 20))
    else:
        out.append(Verdict(name, "not run", None))

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


def _barge_in(benchmarks: Benchmarks, bench: str, calls: int) -> Verdict:
    name = f"barge-in caller-side silence p95 ≤ 100 ms at N={calls}, {ENGINES[bench]}"
    ours = _p95(_at(_levels(benchmarks, bench), calls, "ours"), "barge_in_ms")
    floor_bench = "phone" if bench == "phone" else "webrtc"
    floor = _p95(_at(_levels(benchmarks, floor_bench), calls, "floor"), "barge_in_ms")
    if ours is None:
        return Verdict(name, f"N={calls} not run", None)
    return Verdict(name, f"{ours:.0f} ms{_versus(floor)}", ours <= 100)


def _bursts(levels: list[Level], target: str) -> tuple[int, int, int, list[float]]:
    """Bursts over every level of a target: went on without a pause, resumed, cut; the pauses' p95s."""
    kept = resumed = cut = 0
    pauses = []
    for summary in (level[target] for level in levels if target in level):
        bursts = summary["bursts"]
        kept, resumed, cut = kept + bursts["kept"], resumed + bursts["resumed"], cut + bursts["cut"]
        if summary["burst_pause_ms"]["p95"] is not None:
            pauses.append(summary["burst_pause_ms"]["p95"])
    return kept, resumed, cut, pauses


def _false_interruptions(benchmarks: Benchmarks, bench: str) -> Verdict:
    name = f"150 ms burst mid-answer resumed with no cut in ≥ 95 % of tries, {ENGINES[bench]}"
    levels = _levels(benchmarks, bench)
    kept, resumed, cut, pauses = _bursts(levels, "ours")
    tries = kept + resumed + cut
    if not tries:
        return Verdict(name, "not measured", None)
    pause = f", pause p95 ≤ {max(pauses):.0f} ms" if pauses else ""
    floor = _bursts(levels, "floor")
    versus = f"; floor {floor[0] + floor[1]}/{sum(floor[:3])}" if sum(floor[:3]) else ""
    measured = f"{kept + resumed}/{tries} (went on {kept}, resumed {resumed}{pause}, cut {cut}){versus}"
    return Verdict(name, measured, (kept + resumed) >= RESUMED_SHARE * tries)


def _real_speech_cut(benchmarks: Benchmarks, speech_ms: int | None) -> Verdict:
    name = f"real speech of ≥ 300 ms always cuts the answer (the interruption: {speech_ms} ms)"
    counts = {}
    for bench in ENGINES:
        summaries = [level["ours"] for level in _levels(benchmarks, bench) if "ours" in level]
        cut, tries = sum(s["interruptions"]["cut"] for s in summaries), sum(s["interruptions"]["n"] for s in summaries)
        if tries:
            counts[bench] = (cut, tries)
    if not counts:
        return Verdict(name, "not measured", None)
    measured = ", ".join(f"{bench} {cut}/{tries}" for bench, (cut, tries) in counts.items())
    return Verdict(name, measured, all(cut == tries for cut, tries in counts.values()))


def _phone(benchmarks: Benchmarks) -> list[Verdict]:
    levels = _levels(benchmarks, "phone")
    name = "phone line: ≥ 40 concurrent calls with no underruns"
    if levels:
        ours, floor = _clean_up_to(levels, "ours", None), _clean_up_to(levels, "floor", None)
        clean = Verdict(name, f"clean up to N={ours} (floor: N={floor})", ours >= 40)
    else:
        clean = Verdict(name, "not run", None)
    name = "phone line: added latency above floor, p95 at N=20 ≤ 20 ms"
    ours_ms, floor_ms = _p95(_at(levels, 20, "ours"), "added_ms"), _p95(_at(levels, 20, "floor"), "added_ms")
    if ours_ms is not None and floor_ms is not None:
        above = ours_ms - floor_ms
        added = Verdict(name, f"{above:+.0f} ms ({ours_ms:.0f} vs floor {floor_ms:.0f})", above <= 20)
    else:
        added = Verdict(name, "N=20 not run", None)
    return [clean, added]


def _live(benchmarks: Benchmarks) -> list[Verdict]:
    """GPT-Live over WebRTC: our transport's share of its latency, how fast its model's own stop is heard, and a
    clean playout; the card's cost per minute is shown next to the Realtime engine's."""
    levels, out = _levels(benchmarks, "live"), []
    ours, floor = _at(levels, 10, "ours"), _at(levels, 10, "floor")
    name = "GPT-Live: added latency above floor, p95 at N=10 ≤ 20 ms"
    if _p95(ours, "added_ms") is not None and _p95(floor, "added_ms") is not None:
        above = _p95(ours, "added_ms") - _p95(floor, "added_ms")
        out.append(Verdict(name, f"{above:+.0f} ms ({_p95(ours, 'added_ms'):.0f} vs floor)", above <= 20))
    else:
        out.append(Verdict(name, "N=10 not run", None))
    name = "GPT-Live: caller-side silence after its model stops for a barge-in, p95 at N=10 ≤ 60 ms"
    after = _p95(ours, "after_stop_ms")
    out.append(
        Verdict(
            name, f"{after:.0f} ms" if after is not None else "N=10 not run", None if after is None else after <= 60
        )
    )
    name = "GPT-Live: 0 underruns at N=10"
    out.append(
        Verdict(name, f"{ours['underruns']}" if ours else "N=10 not run", ours["underruns"] == 0 if ours else None)
    )
    realtime = _at(_levels(benchmarks, "webrtc"), 10, "ours")
    costs = [(label, (s or {}).get("card_usd_per_min")) for label, s in (("GPT-Live", ours), ("Realtime", realtime))]
    if all(cost is not None for _, cost in costs):
        shown = ", ".join(f"{label} ${cost:.4f}" for label, cost in costs)
        out.append(Verdict("card cost per minute of the same scripted call at N=10 (shown)", shown, True))
    return out


def _pipeline_overhead(benchmarks: Benchmarks) -> Verdict:
    name = "pipeline engine: our overhead p95 at N=10 ≤ 50 ms beyond the silence and the fakes' times"
    summary = _at(_levels(benchmarks, "pipeline"), 10, "ours")
    overhead = ((summary or {}).get("pipeline") or {}).get("overhead_ms", {}).get("p95")
    if overhead is None:
        return Verdict(name, "N=10 not run", None)
    return Verdict(name, f"{overhead:.0f} ms", overhead <= 50)


def verdicts(benchmarks: Benchmarks, startups_s: list[float], interruption_ms: int | None = None) -> list[Verdict]:
    """Every target: what was measured, and pass (True), miss (False) or not run (None)."""
    return [
        *_issue_7(benchmarks, startups_s),
        _barge_in(benchmarks, "webrtc", 10),
        _barge_in(benchmarks, "pipeline", 10),
        _barge_in(benchmarks, "phone", 20),
        *(_false_interruptions(benchmarks, bench) for bench in ENGINES),
        _real_speech_cut(benchmarks, interruption_ms),
        *_phone(benchmarks),
        *_live(benchmarks),
        _pipeline_overhead(benchmarks),
    ]
