"""The Realtime engine: one speech-to-speech session with the OpenAI Realtime API per call (`handler`), and who
has the floor in it (`floor`: local barge-in, truncation, false interruptions)."""

from components.engines.realtime.handler import RealtimeHandler

__all__ = ["RealtimeHandler"]
