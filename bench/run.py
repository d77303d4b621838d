"""The voicebot benchmark: our app against the fastrtc floor, at rising numbers of concurrent WebRTC calls.

    python bench/run.py                      # N = 1, 5, 10, 20, 40, three rounds per call (~12 minutes)
    python bench/run.py --levels 1,5,10      # chosen levels
    python bench/run.py --quick              # N = 1, one round: a smoke run of the whole harness (~40 s)

At each N, a fresh floor server and then a fresh app (with a fresh fake Realtime server) take N calls from
real WebRTC callers (`bench.harness`); a target stops climbing after a level that saturates it. The report
is printed and written, as Markdown and JSON, to `bench/results/`. `bench/README.md` says what each
figure means and how it is measured.
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
from bench.harness import LevelRun, Speech, run_level  # noqa: E402
from bench.metrics import PLAYOUT_BUFFER_S  # noqa: E402
from bench.report import markdown, summarise, verdicts  # noqa: E402
from bench.servers import FLOOR, OURS, Target  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_LEVELS = [1, 5, 10, 20, 40]


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--levels", help="comma-separated numbers of concurrent calls (default 1,5,10,20,40)")
    parser.add_argument("--rounds", type=int, help="conversation rounds per call (default 3, or 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="N=1 and one round (unless --levels/--rounds say else)")
    parser.add_argument("--targets", default="ours,floor", help="servers to measure: ours, floor or both (default)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="report directory (default bench/results)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the callers' random delays")
    args = parser.parse_args(argv)
    args.levels = [int(n) for n in args.levels.split(",")] if args.levels else [1] if args.quick else DEFAULT_LEVELS
    args.rounds = args.rounds or (1 if args.quick else 3)
    chosen = {name.strip() for name in args.targets.split(",")}
    args.targets = [target for target in (FLOOR, OURS) if target.name in chosen]
    if not args.targets or min(args.levels) < 1 or args.rounds < 1:
        parser.error("need at least one target, levels ≥ 1 and rounds ≥ 1")
    return args


async def _measure(targets: list[Target], levels: list[int], rounds: int, seed: int, workdir: Path) -> list[dict]:
    """Every level in order, floor then ours, each target until a level saturates it."""
    speech = Speech.make(workdir)
    results: list[dict[str, Any]] = []
    saturated: set[str] = set()
    for calls in levels:
        level: dict[str, Any] = {"calls": calls}
        for target in targets:
            if target.name in saturated:
                continue
            print(f"… N={calls} {target.name}", file=sys.stderr, flush=True)
            try:
                run = await run_level(target, calls, rounds, speech, workdir, seed)
            except Exception as failure:  # e.g. the server would not start: report it, climb no further
                run = LevelRun(target.name, calls, error=f"level failed: {failure!r}")
            level[target.name] = summarise(run)
            if level[target.name]["saturated"]:
                saturated.add(target.name)
        if len(level) > 1:
            results.append(level)
    return results


def _machine() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?")
    return f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    started = dt.datetime.now().astimezone()
    with tempfile.TemporaryDirectory(prefix="voicebot-bench-") as tmp:
        levels = asyncio.run(_measure(args.targets, args.levels, args.rounds, args.seed, Path(tmp)))
    startup_s = {
        target.name: [s["page_served_s"] for lv in levels if (s := lv.get(target.name)) and s["page_served_s"]]
        for target in args.targets
    }
    result: dict[str, Any] = {
        "meta": {
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
            "playout_buffer_ms": round(PLAYOUT_BUFFER_S * 1000),
        },
        "levels": levels,
        "startup_s": startup_s,
        "targets": [asdict(verdict) for verdict in verdicts(levels, startup_s.get("ours", []))],
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
