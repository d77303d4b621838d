"""The voice engines, one per protocol: the OpenAI Realtime API, and VAD → STT → LLM → TTS (`pipeline`).

Each is a fastrtc stream handler holding one shared `Call`; no engine imports another. `playout` paces the
agent's voice for both.
"""
