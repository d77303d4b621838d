"""The end-of-turn set: does `Ears` answer a finished sentence at once, wait through a pause, and ignore はい?

    python bench/end_of_turn.py          # or: python bench/run.py --bench end_of_turn   (~1-2 min, no servers)

Synthesised utterances (espeak-ng Japanese and English voices at two speeds and two pitches, via sox; some with
a little line noise, some through an 8 kHz μ-law phone band and back) are fed offline, 20 ms a frame, to
`components.listening.Ears`, ours (Smart Turn + silence floor) and a VAD-only baseline (today's rule:
550 ms of silence ends a turn, 250 ms of speech over the agent cuts it). Three kinds:

* **finished** sentences, then 2.5 s of silence: the wait is the time from the end of the speech (the audio's,
  not the VAD's) to the frame that brought `TurnEnded`, plus the model's measured latency when the model decided
  (offline its answer is awaited before the next frame, so its latency is added here instead of being heard);
* **paused** sentences: espeak's own comma pause (continuing intonation) stretched to 0.5-1.5 s. A `TurnEnded`
  before the second half starts is a false cut-off;
* **backchannels** (はい, うん, uh-huh, ...) spoken while the agent talks: an `Interruption` or a `TurnEnded`
  is a backchannel that cut the agent.

Speech made by espeak-ng is far from what Smart Turn was trained on (people on phones): its prosody does not mark
a finished sentence the way a caller's does, so this set checks the policy and its plumbing, and understates what
the model does on real callers. Recorded calls would be the better set.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as `python bench/end_of_turn.py`: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from components.listening import Ears, Interruption, SmartTurn, TurnEnded, TurnOptions  # noqa: E402
from components.listening.vad import RATE, WINDOW, SileroStream  # noqa: E402

FRAME = 320  # 20 ms frames, as WebRTC delivers them
LEAD_S, TAIL_S = 0.4, 2.5
BASELINE = TurnOptions(interrupt_speech_ms=250)  # with `end_of_turn=None`: fallback_silence_ms decides

FINISHED = {
    "ja": [
        "やまだです。",
        "あしたのよる、しちじに、よにんでおねがいします。",
        "はい、それでだいじょうぶです。",
        "らいしゅうのきんようびは、あいていますか。",
        "まどぎわのせきがいいです。",
        "いいえ、けっこうです。",
    ],
    "en": [
        "My name is Yamada.",
        "A table for four tomorrow at seven, please.",
        "Yes, that's right.",
        "Do you have anything on Friday evening?",
        "We would like a window seat.",
        "No, thank you.",
    ],
}
PAUSED = {  # split at the comma, whose pause is stretched
    "ja": [
        "あしたのよるしちじに、よにんでよやくしたいです。",
        "なまえは、やまだたろうです。",
        "えーと、らいしゅうのどようびで。",
        "こどもがふたりいるので、いすをおねがいします。",
    ],
    "en": [
        "I would like to book a table, for four people tomorrow.",
        "My name is, Taro Yamada.",
        "Could we have, a table by the window?",
        "We are coming at seven, and there will be four of us.",
    ],
}
BACKCHANNELS = {
    "ja": ["はい", "うん", "ええ", "はいはい", "うんうん", "なるほど"],
    "en": ["uh-huh", "yeah", "okay", "right", "mm-hmm", "I see"],
}
VOICES = [(150, 50), (185, 35), (130, 65)]  # (words per minute, pitch)
PAUSES_S = [0.5, 0.8, 1.1, 1.5]


@dataclass
class Case:
    kind: str  # finished | paused | backchannel
    label: str
    audio: np.ndarray  # int16 16 kHz, lead and tail silence included
    speech_end: int  # sample at which the (last) speech ends
    pause: tuple[int, int] | None = None  # paused: the stretched pause, in samples
    agent_speaking: bool = False


@dataclass
class Result:
    cut_off: list[bool] = field(default_factory=list)  # paused: the pause ended the turn
    waits_ms: list[float] = field(default_factory=list)  # finished: silence until the turn ended (+ model)
    early: list[bool] = field(default_factory=list)  # finished: a turn ended before the sentence did
    backchannel_cuts: list[bool] = field(default_factory=list)
    hear_s: float = 0.0  # time spent in `hear`, for the per-window cost
    windows: int = 0


class TimedSmartTurn(SmartTurn):
    """The real model, each check's latency noted (checks run one at a time here, as in a quiet call)."""

    def __init__(self) -> None:
        super().__init__()
        self.latencies_ms: list[float] = []

    def probability(self, audio: np.ndarray) -> float:
        started = time.perf_counter()
        try:
            return super().probability(audio)
        finally:
            self.latencies_ms.append((time.perf_counter() - started) * 1000)


def speak(text: str, voice: str, wpm: int, pitch: int, workdir: Path) -> np.ndarray:
    """espeak-ng → sox: 16 kHz int16, leading and trailing silence trimmed, peak at -3 dBFS."""
    (workdir / "text.txt").write_text(text, encoding="utf-8")
    raw, out = workdir / "espeak.wav", workdir / "speech.raw"
    espeak = [
        "espeak-ng",
        "-v",
        voice,
        "-s",
        str(wpm),
        "-p",
        str(pitch),
        "-w",
        str(raw),
        "-f",
        str(workdir / "text.txt"),
    ]
    subprocess.run(espeak, check=True, capture_output=True)
    trim = ["silence", "1", "0.02", "0.5%", "reverse", "silence", "1", "0.02", "0.5%", "reverse", "gain", "-n", "-3"]
    sox = ["sox", str(raw), "-r", str(RATE), "-c", "1", "-b", "16", "-e", "signed-integer", "-t", "raw", str(out)]
    subprocess.run([*sox, *trim], check=True, capture_output=True)
    return np.frombuffer(out.read_bytes(), dtype=np.int16)


def phone_band(pcm: np.ndarray, workdir: Path) -> np.ndarray:
    """Through a telephone line: 8 kHz μ-law and back to 16 kHz (the phone engine hears this)."""
    src, low, out = workdir / "in.raw", workdir / "phone.wav", workdir / "out.raw"
    src.write_bytes(pcm.tobytes())
    raw16 = ["-t", "raw", "-r", str(RATE), "-e", "signed-integer", "-b", "16", "-c", "1"]
    subprocess.run(["sox", *raw16, str(src), "-r", "8000", "-e", "u-law", str(low)], check=True, capture_output=True)
    subprocess.run(["sox", str(low), *raw16, str(out)], check=True, capture_output=True)
    return np.frombuffer(out.read_bytes(), dtype=np.int16)[: pcm.size]


def line(pcm: np.ndarray, variant: str, rng: np.random.Generator, workdir: Path) -> np.ndarray:
    """The channel a caller is heard through: clean, with a little hiss (-50 dBFS), or a phone line."""
    if variant == "phone":
        return phone_band(pcm, workdir)
    if variant == "noise":
        hiss = rng.standard_normal(pcm.size) * 32768 * 10 ** (-50 / 20)
        return np.clip(pcm + hiss, -32768, 32767).astype(np.int16)
    return pcm


def comma_gap(pcm: np.ndarray) -> tuple[int, int]:
    """The longest quiet stretch inside an utterance (espeak's comma pause), in samples."""
    hop = 160
    frames = pcm[: pcm.size // hop * hop].reshape(-1, hop).astype(np.float64)
    quiet = np.sqrt(np.mean(frames**2, axis=1)) < 32768 * 0.01
    best, start = (0, 0), None
    for index, q in enumerate([*quiet, False]):
        if q and start is None:
            start = index
        elif not q and start is not None:
            if start > 0 and index - start > best[1] - best[0]:
                best = (start, index)
            start = None
    return best[0] * hop, best[1] * hop


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), dtype=np.int16)


def build_cases(workdir: Path) -> list[Case]:
    rng = np.random.default_rng(22)
    variants = ["clean", "noise", "phone"]
    cases: list[Case] = []
    for lang, voice in (("ja", "ja"), ("en", "en-us")):
        for index, text in enumerate(FINISHED[lang]):
            for v, (wpm, pitch) in enumerate(VOICES):
                speech = speak(text, voice, wpm, pitch, workdir)
                audio = np.concatenate([silence(LEAD_S), speech, silence(TAIL_S)])
                end = int(LEAD_S * RATE) + speech.size
                variant = variants[(index + v) % 3]
                cases.append(Case("finished", f"{lang} {variant} {text}", line(audio, variant, rng, workdir), end))
        for index, text in enumerate(PAUSED[lang]):
            for v, (wpm, pitch) in enumerate(VOICES):
                speech = speak(text, voice, wpm, pitch, workdir)
                gap_start, gap_end = comma_gap(speech)
                middle = (gap_start + gap_end) // 2
                for p, pause in enumerate(PAUSES_S):
                    if (v + p) % 2:  # half of the voice × pause grid keeps the run short
                        continue
                    first, second = speech[:middle], speech[middle:]
                    stretch = silence(max(0.0, pause - (gap_end - gap_start) / RATE))
                    audio = np.concatenate([silence(LEAD_S), first, stretch, second, silence(TAIL_S)])
                    begin = int(LEAD_S * RATE) + gap_start
                    resume = int(LEAD_S * RATE) + first.size + stretch.size + (gap_end - middle)
                    variant = variants[(index + v + p) % 3]
                    label = f"{lang} {variant} pause {pause:.1f}s {text}"
                    heard = line(audio, variant, rng, workdir)
                    cases.append(Case("paused", label, heard, resume + second.size, pause=(begin, resume)))
        for index, word in enumerate(BACKCHANNELS[lang]):
            for v, (wpm, pitch) in enumerate(VOICES):
                speech = speak(word, voice, wpm, pitch, workdir)
                audio = np.concatenate([silence(LEAD_S), speech, silence(TAIL_S)])
                variant = variants[(index + v) % 3]
                end = int(LEAD_S * RATE) + speech.size
                heard = line(audio, variant, rng, workdir)
                cases.append(Case("backchannel", f"{lang} {variant} {word}", heard, end, agent_speaking=True))
    return cases


async def run_case(ears: Ears, case: Case, result: Result, model: TimedSmartTurn | None) -> None:
    """Feed one case frame by frame; note what the set measures."""
    ears.reset()
    ears.vad.reset()
    ended: list[tuple[int, float]] = []  # (sample at which a turn ended, ms since the speech ended + the model's)
    cut = False
    for at in range(0, case.audio.size, FRAME):
        started = time.perf_counter()
        heard = ears.hear(case.audio[at : at + FRAME], agent_speaking=case.agent_speaking)
        result.hear_s += time.perf_counter() - started
        heard += await ears.settle()
        for event in heard:
            if isinstance(event, TurnEnded):  # the deciding check is the latest: checks run one at a time here
                latency = model.latencies_ms[-1] if model and event.complete is not None else 0.0
                ended.append((at + FRAME, (at + FRAME - case.speech_end) * 1000 / RATE + latency))
            cut = cut or isinstance(event, Interruption | TurnEnded)
    result.windows += case.audio.size // WINDOW
    if case.kind == "backchannel":
        result.backchannel_cuts.append(cut)
    elif case.kind == "paused":
        assert case.pause is not None
        result.cut_off.append(any(case.pause[0] <= at < case.pause[1] for at, _ in ended))
    else:
        result.early.append(any(at < case.speech_end for at, _ in ended))
        result.waits_ms.append(next((wait for at, wait in ended if at >= case.speech_end), TAIL_S * 1000))


def verdict(value: float, target: float) -> str:
    return "PASS" if value <= target else "MISS"


async def measure(cases: list[Case]) -> tuple[Result, Result, TimedSmartTurn, float]:
    model = TimedSmartTurn()
    model.load()
    ours, baseline = Result(), Result()
    vad = SileroStream()
    ears = Ears(end_of_turn=model, vad=vad)
    plain = Ears(options=BASELINE, end_of_turn=None, vad=SileroStream())
    for case in cases:
        await run_case(ears, case, ours, model)
        await run_case(plain, case, baseline, None)
    return ours, baseline, model, vad.model_windows / max(1, ours.windows)


def report(cases: list[Case], ours: Result, baseline: Result, model: TimedSmartTurn, loud_share: float) -> str:
    counts = {kind: sum(c.kind == kind for c in cases) for kind in ("finished", "paused", "backchannel")}
    rows = []
    for name, r in (("ours (Smart Turn)", ours), ("VAD only (550 ms)", baseline)):
        false_cut = 100 * sum(r.cut_off) / max(1, len(r.cut_off))
        wait = statistics.median(r.waits_ms) if r.waits_ms else float("nan")
        p90 = float(np.percentile(r.waits_ms, 90)) if r.waits_ms else float("nan")
        cuts = sum(r.backchannel_cuts)
        rows.append(
            f"| {name} | {false_cut:.0f} % {verdict(false_cut, 5)} | {wait:.0f} ms {verdict(wait, 300)} "
            f"(p90 {p90:.0f}) | {cuts}/{len(r.backchannel_cuts)} {verdict(cuts, 0)} | {sum(r.early)} |"
        )
    per_window_ms = 1000 * ours.hear_s / max(1, ours.windows)
    latency = model.latencies_ms
    return "\n".join(
        [
            (
                f"End-of-turn set: {counts['finished']} finished sentences, {counts['paused']} with a mid-sentence "
                f"pause (0.5-1.5 s), {counts['backchannel']} backchannels over the agent (ja + en, espeak-ng)."
            ),
            "",
            (
                "| | false cut-offs (≤ 5 %) | median wait after a finished sentence (≤ 300 ms) | backchannels that cut"
                " the agent (0) | finished sentences cut early |"
            ),
            "|---|---|---|---|---|",
            *rows,
            "",
            (
                f"Smart Turn latency here (features + model, 1 thread): p50 {statistics.median(latency):.0f} ms,"
                f" p90 {np.percentile(latency, 90):.0f} ms, over {len(latency)} checks."
            ),
            (
                f"Ears.hear cost: {per_window_ms:.3f} ms per 32 ms window on average (Silero ran on "
                f"{100 * loud_share:.0f} % of windows; quiet ones are skipped)."
            ),
            f"Options: {TurnOptions()}",
        ]
    )


def main() -> int:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="end-of-turn-") as tmp:
        cases = build_cases(Path(tmp))
    ours, baseline, model, loud_share = asyncio.run(measure(cases))
    print(report(cases, ours, baseline, model, loud_share))
    print(f"({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
