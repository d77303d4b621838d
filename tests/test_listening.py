"""The caller's ears: speech heard from its first word, turns ended by the real Smart Turn model after a short
silence, pauses waited through when the model says "not yet", and backchannels over the agent that cut nothing."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np

from components.listening import (
    Backchannel,
    Ears,
    Interruption,
    Pausing,
    SileroStream,
    SmartTurn,
    SpeechStarted,
    TurnEnded,
    TurnOptions,
)
from components.listening.features import SAMPLES, log_mel
from components.listening.smart_turn import MODEL_PATH
from components.listening.vad import MODEL_PATH as VAD_MODEL_PATH
from tests.speech import speech_pcm

RATE = 16_000
FRAME = 320  # 20 ms
MODEL = SmartTurn()  # one session for the module, as the app shares one per process


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), dtype=np.int16)


def hiss(seconds: float, dbfs: float) -> np.ndarray:
    samples = np.random.default_rng(7).standard_normal(int(seconds * RATE)) * 32768 * 10 ** (dbfs / 20)
    return samples.astype(np.int16)


def say(text: str, voice: str = "en") -> np.ndarray:
    return speech_pcm(text, RATE, voice)


def listen(ears: Ears, audio: np.ndarray, agent_speaking: list[bool] | bool = False) -> list[tuple[int, object]]:
    """Feed `audio` in 20 ms frames (awaiting each model check, as offline runs do): (ms at the frame's end, event)."""

    async def run() -> list[tuple[int, object]]:
        heard: list[tuple[int, object]] = []
        for index, at in enumerate(range(0, audio.size, FRAME)):
            agent = agent_speaking if isinstance(agent_speaking, bool) else agent_speaking[index]
            events = ears.hear(audio[at : at + FRAME], agent_speaking=agent) + await ears.settle()
            heard += [((at + FRAME) * 1000 // RATE, event) for event in events]
        return heard

    return asyncio.run(run())


def kinds(heard: list[tuple[int, object]]) -> list[str]:
    return [type(event).__name__ for _, event in heard]


class Scripted:
    """An end-of-turn model that answers `probability`, optionally slowly: the policy without the model's opinion."""

    def __init__(self, probability: float, delay_s: float = 0.0) -> None:
        self.probability, self.delay_s, self.asked = probability, delay_s, 0

    async def complete(self, audio: np.ndarray) -> float:
        self.asked += 1
        await asyncio.sleep(self.delay_s)
        return self.probability


def test_a_quiet_line_is_silence_and_the_words_after_it_are_heard_from_the_first_window() -> None:
    words = say("Hello, I would like to book a table for four people tomorrow.")
    for before in (hiss(1.0, -70.0), silence(1.0)):
        vad = SileroStream()
        audio = np.concatenate([before, words, before])
        speech = [s for at in range(0, audio.size, FRAME) for s in vad.windows(audio[at : at + FRAME])]
        lead = before.size // 512
        assert not any(speech[:lead]) and not any(speech[-lead + 2 :])
        assert any(speech[lead : lead + 4])  # the first word, not a chunk later
        assert sum(speech) * 512 >= 0.7 * words.size
        assert vad.model_windows < len(speech) - lead  # the quiet lead was never given to the model


def test_calls_share_one_vad_model_but_each_keeps_its_own_stream() -> None:
    calls = [
        say("Hello, I would like to book a table for four people tomorrow."),
        say("明日の夜七時に、四名でお願いします。", "ja"),
    ]
    size = min(audio.size for audio in calls) // FRAME * FRAME
    alone = []
    for audio in calls:
        vad = SileroStream()
        alone.append([s for at in range(0, size, FRAME) for s in vad.windows(audio[at : at + FRAME])])
    together: list[list[bool]] = [[], []]
    streams = [SileroStream(), SileroStream()]
    for at in range(0, size, FRAME):  # frame by frame, turn about, as two calls on one loop
        for index, audio in enumerate(calls):
            together[index] += streams[index].windows(audio[at : at + FRAME])
    assert together == alone and all(any(speech) for speech in alone)


def test_features_match_whispers_feature_extractor() -> None:
    """Reference: transformers 5.25.0 `WhisperFeatureExtractor(chunk_length=8)` on the same signal (max difference
    1.2e-7 over all 80 × 800 values when this was written); here every fifth band's mean and every 100th frame's."""
    t = np.arange(3 * RATE) / RATE
    chirp = 0.3 * np.sin(2 * np.pi * (100 * t + (7000 - 100) / 6 * t**2)) + 0.1 * np.sin(2 * np.pi * 440 * t)
    features = log_mel(np.concatenate([np.zeros(SAMPLES - t.size), chirp]).astype(np.float32))
    bands = [-0.07158, -0.15771, 0.42008, -0.15014, -0.14944, -0.15059, -0.15053, -0.15138]
    bands += [-0.14932, -0.14845, -0.14668, -0.14419, -0.14142, -0.13812, -0.13282, -0.12784]
    frames = [-0.18899, -0.18899, -0.18899, -0.18899, -0.18899, 0.54011, -0.01495, -0.03827]
    assert features.shape == (80, 800) and features.dtype == np.float32
    np.testing.assert_allclose(features.mean(axis=1)[::5], bands, atol=2e-5)
    np.testing.assert_allclose(features.mean(axis=0)[::100], frames, atol=2e-5)


def test_a_finished_sentence_ends_the_turn_after_the_floor_and_one_model_check() -> None:
    for text, voice in (("Yes, that's right.", "en"), ("やまだです。", "ja")):
        words = say(text, voice)
        heard = listen(Ears(end_of_turn=MODEL), np.concatenate([silence(0.5), words, silence(2.0)]))
        assert kinds(heard) == ["SpeechStarted", "Pausing", "TurnEnded"], (text, heard)
        (_, pausing), (at, ended) = heard[1:]
        assert isinstance(ended, TurnEnded) and ended.complete is not None and ended.complete >= 0.5
        # the words were handed over at the floor, and only silence came after them
        assert isinstance(pausing, Pausing) and ended.pause == pausing.number
        assert np.array_equal(pausing.audio, ended.audio[: pausing.audio.size])
        floor = TurnOptions().floor_ms
        assert (
            floor - 50 <= ended.waited_ms <= floor + 60 and at <= (0.5 * RATE + words.size) * 1000 // RATE + floor + 100
        )
        assert ended.audio.size >= words.size + 0.25 * RATE  # the first syllable and the preroll are in it
        assert ended.speech_ms >= 0.6 * words.size * 1000 / RATE


def test_a_pause_the_model_calls_unfinished_is_one_turn_and_the_silence_limit_still_ends_it() -> None:
    first, second = say("I would like to book a table"), say("for four people tomorrow.")
    audio = np.concatenate([silence(0.5), first, silence(0.9), second, silence(2.5)])
    model = Scripted(0.1)
    options = TurnOptions()
    heard = listen(Ears(end_of_turn=model, options=options), audio)
    assert kinds(heard) == ["SpeechStarted", "Pausing", "Pausing", "TurnEnded"]
    (_, in_the_pause), (_, at_the_end), (_, ended) = heard[1:]
    assert isinstance(ended, TurnEnded) and ended.complete is None
    # the pause's words are superseded by those at the end, which hold the whole utterance
    assert isinstance(in_the_pause, Pausing) and isinstance(at_the_end, Pausing)
    assert in_the_pause.audio.size < first.size + 0.5 * RATE + 0.9 * RATE <= at_the_end.audio.size
    assert ended.pause == at_the_end.number != in_the_pause.number
    assert abs(ended.waited_ms - options.max_silence_ms) <= 32
    assert ended.audio.size >= first.size + second.size + 0.9 * RATE
    assert model.asked == 2  # once at the floor in the pause, once at the end (no rechecks by default)


def test_speech_resuming_while_the_model_thinks_voids_its_answer() -> None:
    """A slow model says "complete" about the pause, but the caller went on before it answered."""
    first, second = say("I would like to book a table"), say("for four people tomorrow.")
    audio = np.concatenate([silence(0.5), first, silence(0.3), second, silence(1.0)])

    async def run() -> list[str]:
        ears, heard = Ears(end_of_turn=Scripted(0.9, delay_s=0.05)), []
        for at in range(0, audio.size, FRAME):  # live pacing: the model's answer comes 50 ms later
            heard += ears.hear(audio[at : at + FRAME], agent_speaking=False)
            await asyncio.sleep(0.001 if at < 0.5 * RATE + first.size + 0.3 * RATE else 0.02)
        return [type(event).__name__ for event in heard]

    assert asyncio.run(run()) == ["SpeechStarted", "Pausing", "Pausing", "TurnEnded"]


def test_without_a_model_a_fixed_silence_ends_the_turn() -> None:
    words = say("A table for two, please.")
    heard = listen(Ears(end_of_turn=None), np.concatenate([silence(0.5), words, silence(1.5)]))
    assert kinds(heard) == ["SpeechStarted", "TurnEnded"]
    ended = heard[1][1]
    assert isinstance(ended, TurnEnded) and ended.complete is None and abs(ended.waited_ms - 550) <= 32


def test_backchannels_over_the_agent_neither_cut_it_nor_make_a_turn() -> None:
    for text, voice in (("はい", "ja"), ("うん", "ja"), ("ええ", "ja"), ("uh-huh", "en"), ("mm-hmm", "en")):
        heard = listen(Ears(end_of_turn=MODEL), np.concatenate([silence(0.5), say(text, voice), silence(1.5)]), True)
        assert kinds(heard)[-1] == "Backchannel", (text, heard)
        assert "Interruption" not in kinds(heard) and "TurnEnded" not in kinds(heard), (text, heard)
        assert all(isinstance(e, SpeechStarted | Backchannel) for _, e in heard)


def test_speech_over_the_agent_long_enough_interrupts_and_then_ends_as_a_turn() -> None:
    words = say("Sorry, no, I meant next Saturday evening instead.")
    assert words.size >= 1.5 * RATE
    heard = listen(Ears(end_of_turn=MODEL), np.concatenate([silence(0.5), words, silence(2.0)]), True)
    assert kinds(heard)[:2] == ["SpeechStarted", "Interruption"] and kinds(heard)[-1] == "TurnEnded", heard
    at, interruption = heard[1]
    assert isinstance(interruption, Interruption) and interruption.speech_ms >= TurnOptions().interrupt_speech_ms
    assert at <= 500 + TurnOptions().interrupt_speech_ms + 400  # while the caller is still talking


def test_a_short_answer_overlapping_the_end_of_the_agents_question_is_a_turn() -> None:
    """「…よろしいですか」 / 「はい」: the caller's はい started before the agent finished, and outlasted it."""
    audio = np.concatenate([silence(0.5), say("はい", "ja"), silence(1.5)])
    agent = [at < 0.6 * RATE for at in range(0, audio.size, FRAME)]  # the agent falls quiet 100 ms into はい
    heard = listen(Ears(end_of_turn=Scripted(0.9)), audio, agent)
    assert kinds(heard) == ["SpeechStarted", "Pausing", "TurnEnded"]


def test_reset_forgets_the_utterance_in_progress() -> None:
    words = say("I would like to book a table for four people tomorrow.")
    ears = Ears(end_of_turn=None)
    heard = listen(ears, np.concatenate([silence(0.5), words[: words.size // 2]]))
    assert kinds(heard) == ["SpeechStarted"] and ears.in_utterance
    ears.reset()
    assert not ears.in_utterance and kinds(listen(ears, silence(1.0))) == []


def test_the_models_are_files_in_the_repository_and_load_with_no_network() -> None:
    assets = Path(__file__).resolve().parents[1] / "assets"
    assert all(path.is_file() and path.is_relative_to(assets) for path in (MODEL_PATH, VAD_MODEL_PATH))
    script = (
        "import socket, numpy as np\n"
        "def refuse(*args, **kwargs): raise OSError('network used')\n"
        "socket.socket.connect = socket.create_connection = refuse\n"
        "from components.listening import SmartTurn\n"
        "p = SmartTurn().probability(np.zeros(16000, dtype=np.float32))\n"
        "assert 0.0 <= p <= 1.0, p\n"
        "from components.listening import SileroStream\n"
        "assert SileroStream().probability(np.zeros(512, dtype=np.float32)) < 0.5\n"
        "print('ok')\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": "/nonexistent"}
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_the_end_of_turn_model_gives_way_to_the_calls_audio_for_the_cpu() -> None:
    """Its checks take ~80 ms of a core each; the event loop carrying every call's audio must not wait behind them, so
    their threads run at a lower priority than the process (on Linux, where a thread has its own niceness)."""
    model = SmartTurn(workers=1)
    probability = asyncio.run(model.complete(np.zeros(RATE, dtype=np.float32)))
    assert 0.0 <= probability <= 1.0
    workers = [thread for thread in threading.enumerate() if thread.name.startswith("smart-turn")]
    assert workers, "no model thread"
    process = os.getpriority(os.PRIO_PROCESS, 0)
    assert all(os.getpriority(os.PRIO_PROCESS, thread.native_id) > process for thread in workers)
