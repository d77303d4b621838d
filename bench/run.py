"""The voicebot benchmark: our app against its floors, at rising numbers of concurrent calls, three ways.

    python bench/run.py                               # every benchmark at N = 1, 5, 10, 20, 40, three rounds (~35 min)
    python bench/run.py --bench webrtc,pipeline       # chosen benchmarks: webrtc, pipeline, phone
    python bench/run.py --levels 10,20 --levels phone=10,20,40   # chosen levels, for all or for one benchmark
    python bench/run.py --quick                       # N = 1, one round of each: a smoke run of the whole harness
    python bench/run.py --bench end_of_turn           # the end-of-turn set alone (offline, no servers, ~1 min)

The benchmarks (`bench.servers.BENCHMARKS`): `webrtc`, the Realtime engine over WebRTC against the fastrtc
floor; `pipeline`, the pipeline engine over WebRTC against the fakes' own times; `phone`, the phone line as
Twilio calls it against fastrtc's own phone handler. At each N, each target is started fresh (with its fake
in its own process) and takes N calls (`bench.harness`); a target stops climbing after a level that
saturates it. The report is printed and written, as Markdown and JSON, to `bench/results/`.
`bench/README.md` says what each figure means and how it is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import shlex
import signal
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python bench/run.py`: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import conversation as talk  # noqa: E402
from bench import end_of_turn, fake_openai  # noqa: E402
from bench.calls import Speech  # noqa: E402
from bench.harness import LevelRun, run_level  # noqa: E402
from bench.metrics import PLAYOUT_BUFFER_S  # noqa: E402
from bench.report import markdown, summarise  # noqa: E402
from bench.servers import BENCHMARKS, Target  # noqa: E402
from bench.targets import verdicts  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_LEVELS = [1, 5, 10, 20, 40]


def _levels(parser: argparse.ArgumentParser, given: list[str], benches: list[str], quick: bool) -> dict[str, list[int]]:
    """`--levels 1,5` for every benchmark, `--levels phone=10,20` for one (the later wins)."""
    levels = {bench: [1] if quick else list(DEFAULT_LEVELS) for bench in benches}
    for value in given:
        name, _, numbers = value.rpartition("=")
        try:
            chosen = [int(n) for n in numbers.split(",")]
        except ValueError:
            parser.error(f"--levels takes numbers like 1,5,10 or phone=10,20, not {value!r}")
        if name and name not in BENCHMARKS:
            parser.error(f"--levels {value}: no benchmark {name!r} (one of {', '.join(BENCHMARKS)})")
        for bench in [name] if name else benches:
            levels[bench] = chosen
    if min(min(chosen, default=0) for chosen in levels.values()) < 1:
        parser.error("levels must be ≥ 1")
    return {bench: chosen for bench, chosen in levels.items() if bench in benches}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--bench", default=",".join(BENCHMARKS), help="webrtc,pipeline,phone (default), or end_of_turn")
    parser.add_argument(
        "--levels", action="append", default=[], help="concurrent calls, e.g. 1,5,10 or phone=10,20,40 (repeatable)"
    )
    parser.add_argument("--rounds", type=int, help="conversation rounds per call (default 3, or 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="N=1 and one round (unless --levels/--rounds say else)")
    parser.add_argument("--targets", default="ours,floor", help="servers to measure: ours, floor or both (default)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="report directory (default bench/results)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the callers' random delays")
    args = parser.parse_args(argv)
    asked = {b.strip() for b in args.bench.split(",")}
    args.end_of_turn = "end_of_turn" in asked  # offline, no servers: run on its own, never with the levels
    args.bench = [name for name in BENCHMARKS if name in asked]
    if args.end_of_turn:
        if args.bench:
            parser.error("--bench end_of_turn runs on its own (it starts no servers)")
        return args
    args.levels = _levels(parser, args.levels, args.bench, args.quick)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.targets = {name.strip() for name in args.targets.split(",")} & {"ours", "floor"}
    if not args.bench or not args.targets or args.rounds < 1:
        parser.error("need at least one benchmark, one target and rounds ≥ 1")
    return args


async def _climb(
    targets: list[Target], levels: list[int], rounds: int, seed: int, workdir: Path, speech: dict[str, Speech]
) -> list[dict[str, Any]]:
    """One benchmark's levels in order, its targets one after the other, each until a level saturates it."""
    results: list[dict[str, Any]] = []
    saturated: set[str] = set()
    for calls in levels:
        level: dict[str, Any] = {"calls": calls}
        for target in targets:
            if target.name in saturated:
                continue
            if target.transport not in speech:
                speech[target.transport] = Speech.make(workdir, target.transport)
            print(f"… {target.bench} N={calls} {target.name}", file=sys.stderr, flush=True)
            try:
                run = await run_level(target, calls, rounds, speech[target.transport], workdir, seed)
            except Exception as failure:  # e.g. the server would not start: report it, climb no further
                run = LevelRun(target.name, calls, error=f"level failed: {failure!r}")
            try:
                level[target.name] = summarise(run)
            except Exception as failure:  # a measuring bug must not lose the rest of the run: report it
                level[target.name] = summarise(LevelRun(target.name, calls, error=f"summary failed: {failure!r}"))
            if level[target.name]["saturated"]:
                saturated.add(target.name)
        if len(level) > 1:
            results.append(level)
    return results


async def _measure(args: argparse.Namespace, workdir: Path) -> tuple[dict[str, Any], dict[str, Speech]]:
    speech: dict[str, Speech] = {}
    benchmarks: dict[str, Any] = {}
    for bench in args.bench:
        targets = [target for target in BENCHMARKS[bench] if target.name in args.targets]
        if not targets:
            continue
        levels = await _climb(targets, args.levels[bench], args.rounds, args.seed, workdir, speech)
        startup_s = {
            target.name: [s["page_served_s"] for lv in levels if (s := lv.get(target.name)) and s["page_served_s"]]
            for target in targets
        }
        benchmarks[bench] = {"levels": levels, "startup_s": startup_s}
    return benchmarks, speech


def _machine() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?")
    return f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}"


def _meta(args: argparse.Namespace, argv: list[str] | None, started: dt.datetime, speech: Speech | None) -> dict:
    return {
        "started_at": started.isoformat(timespec="seconds"),
        "machine": _machine(),
        "command": shlex.join(["python", "bench/run.py", *(sys.argv[1:] if argv is None else argv)]),
        "levels_asked": args.levels,
        "rounds": args.rounds,
        "think_ms": round(talk.THINK_S * 1000),
        "pace": talk.PACE,
        "greeting_ms": talk.GREETING_MS,
        "long_ms": talk.LONG_ANSWER_MS,
        "short_ms": talk.SHORT_ANSWER_MS,
        "barge_after_s": talk.BARGE_AFTER_S,
        "burst_ms": talk.BURST_MS,
        "burst_after_s": talk.BURST_AFTER_S,
        "utterance_ms": speech.utterance_ms() if speech else {"question": None, "interruption": None, "burst": None},
        "stt_ms": round(fake_openai.STT_LATENCY_S * 1000),
        "ttft_ms": round(fake_openai.CHAT_TTFT_S * 1000),
        "chat_piece_ms": round(fake_openai.CHAT_PIECE_S * 1000),
        "ttfb_ms": round(fake_openai.TTS_TTFB_S * 1000),
        "playout_buffer_ms": round(PLAYOUT_BUFFER_S * 1000),
    }


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.end_of_turn:
        return end_of_turn.main()
    started = dt.datetime.now().astimezone()
    with tempfile.TemporaryDirectory(prefix="voicebot-bench-") as tmp:
        benchmarks, speech = asyncio.run(_measure(args, Path(tmp)))
    ours_starts = [s for bench in benchmarks.values() for s in bench["startup_s"].get("ours", [])]
    meta = _meta(args, argv, started, speech.get("webrtc") or speech.get("phone"))
    result: dict[str, Any] = {
        "meta": meta,
        "benchmarks": benchmarks,
        "targets": [asdict(v) for v in verdicts(benchmarks, ours_starts, meta["utterance_ms"]["interruption"])],
    }
    text = markdown(result)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"bench-{started:%Y%m%d-%H%M%S}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1))
    stem.with_suffix(".md").write_text(text)
    print(text)
    print(f"Written: {stem}.md and {stem}.json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop the servers we started, as Ctrl-C does
    raise SystemExit(main())
