"""The voice engines, one per protocol: OpenAI's GPT-Live (`live`), the Realtime API (`realtime`), and our own ears
(`listening`) → STT → LLM → TTS (`pipeline`).

Each is a fastrtc `AsyncStreamHandler` (through `adapters.fastrtc.EngineHandler`, which hands it the caller's
audio frame by frame) holding one shared `Call`; no engine imports another. Shared by them:
`playout` paces the agent's voice, `floor` wires the local barge-in and the echo check around it;
`adapters.fastrtc` turns the call's outputs into fastrtc's and holds what else they rely on from fastrtc.

May import: adapters, call, listening, restaurant, store, settings
Never imports: gradio
"""
