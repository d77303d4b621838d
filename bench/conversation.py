"""The one conversation every benchmark call has, shared by the fake models, the floor app and the callers.

The app and the floor must be asked the same thing and answer with the same timing, or their difference
would not be our overhead. So the script lives here once: a greeting, then `rounds` times a question that
gets a long answer, an interruption spoken over that answer (barge-in), a short answer to it, and a short
burst of sound in the middle of that short answer (a false interruption: a cough, an "uh").

The "model" (the fake Realtime server, the fake HTTP API, or the floor's own handler) waits `THINK_S` before
its first audio (the HTTP fake has its own stage timings, `bench.fake_openai`) and detects speech like the
fake's server VAD: 20 ms windows at or above `VAD_THRESHOLD_DBFS`, `SPEECH_START_MS` of them to start,
`SILENCE_MS` of quiet to end a turn (the app's session asks for 500 ms too). A turn with less than
`NOISE_MAX_MS` of loud audio is noise: the models transcribe it as nothing and do not answer it.
"""

from __future__ import annotations

from tests import fake_live as live
from tests.fake_realtime import Script, greet, inaudible, on_caller_speech, pause, say, user_said

KEY = "sk-bench-not-a-real-key"
"""The dummy OpenAI key the app is given and the fakes accept."""

THINK_S = 0.4
"""The Realtime model's think time: from the end of the caller's turn (or `response.create`) to its first audio."""
PACE = 0.25
"""The fakes send audio four times faster than real time, as the real APIs stream ahead of playback."""

GREETING_MS = 1500
LONG_ANSWER_MS = 8000
SHORT_ANSWER_MS = 3000

VAD_THRESHOLD_DBFS = -45.0
SPEECH_START_MS = 60
SILENCE_MS = 500
NOISE_MAX_MS = 300
"""A caller turn with less loud audio than this is a noise, not words: the models ignore it."""

QUESTION = "Which tables do you have free on Friday evening"
INTERRUPTION = "Thank you that is enough for me"
BURST_SOUND = "ah"
"""What the false interruption is cut from: espeak-ng's "ah", a speech-like sound (`BURST_MS` of it)."""
BARGE_AFTER_S = 1.5
"""How much of the long answer the caller hears before talking over it."""
BURST_MS = 150
BURST_AFTER_S = 0.8
"""How much of the short answer the caller hears before the burst."""

GREETING_TEXT = "Hello, this is AI-SHIFT. How can I help?"
LONG_TEXT = "On Friday evening we have a table for two at six, a table for four at seven, and more. " * 2
SHORT_TEXT = "Of course. Shall I book seven o'clock?"


def answer_lengths_ms(rounds: int) -> list[int]:
    """The audio length of each answer, in the order the caller's turns get them (greeting not included)."""
    return [LONG_ANSWER_MS, SHORT_ANSWER_MS] * rounds


def fake_script(rounds: int) -> Script:
    """The fake Realtime server's side of the conversation, per connection.

    The burst is a turn of its own (the fake's VAD commits it like any speech): transcribed as nothing, and
    not answered, so that whatever the app does with it, the next question still gets the next answer."""
    turns = [greet(pause(THINK_S), say(GREETING_TEXT, audio_ms=GREETING_MS))]
    for _ in range(rounds):
        turns.append(on_caller_speech(user_said(QUESTION), pause(THINK_S), say(LONG_TEXT, audio_ms=LONG_ANSWER_MS)))
        turns.append(
            on_caller_speech(user_said(INTERRUPTION), pause(THINK_S), say(SHORT_TEXT, audio_ms=SHORT_ANSWER_MS))
        )
        turns.append(on_caller_speech(inaudible()))
    return Script(*turns)


def live_script(rounds: int) -> live.Script:
    """The fake GPT-Live server's side of the same conversation. Its model stops by itself when the caller talks
    over it for 200 ms (the interruption does, the burst does not), and the burst is a turn it does not answer."""
    turns = [live.greet(live.pause(THINK_S), live.say(GREETING_TEXT, audio_ms=GREETING_MS))]
    for _ in range(rounds):
        turns.append(live.on_caller_speech(live.pause(THINK_S), live.say(LONG_TEXT, audio_ms=LONG_ANSWER_MS)))
        turns.append(live.on_caller_speech(live.pause(THINK_S), live.say(SHORT_TEXT, audio_ms=SHORT_ANSWER_MS)))
        turns.append(live.on_caller_speech())
    return live.Script(*turns)
