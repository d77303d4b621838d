"""The GPT-Live engine: one full-duplex Live session per call, with Responses delegation to a backend model that
calls our tools (`handler`), and the session's audio formats (`audio`)."""

from components.engines.live.handler import LiveHandler

__all__ = ["LiveHandler"]
