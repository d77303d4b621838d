"""The voice engines, one per protocol: the OpenAI Realtime API (`realtime`), and VAD → STT → LLM → TTS
(`pipeline`).

Each is a fastrtc stream handler holding one shared `Call`; no engine imports another. Shared by them:
`playout` paces the agent's voice, `uplink` hands over the caller's WebRTC audio sooner; `adapters.fastrtc`
turns the call's outputs into fastrtc's.

May import: adapters, call, restaurant, store, settings
Never imports: gradio
"""
