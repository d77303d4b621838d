"""The caller's ears: voice activity on 32 ms windows, end of turn from a model, interruptions and backchannels.

Engine-independent: it takes int16 16 kHz frames and says what it heard (`Ears.hear`), so any engine (the
pipeline's handler, a Realtime engine's local barge-in) can use it. Its model is a file in `assets/`, never
downloaded.

May import: listening
Never imports: fastrtc, gradio, openai, sqlalchemy, psycopg
"""

from components.listening.smart_turn import EndOfTurn, SmartTurn
from components.listening.turns import (
    Backchannel,
    Ears,
    Heard,
    Interruption,
    Pausing,
    SpeechStarted,
    TurnEnded,
    TurnOptions,
)
from components.listening.vad import VAD, SileroStream, VADOptions

__all__ = [
    "VAD",
    "Backchannel",
    "Ears",
    "EndOfTurn",
    "Heard",
    "Interruption",
    "Pausing",
    "SileroStream",
    "SmartTurn",
    "SpeechStarted",
    "TurnEnded",
    "TurnOptions",
    "VADOptions",
]
