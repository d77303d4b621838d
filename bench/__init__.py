"""The voicebot benchmark: our app against the fastrtc floor under concurrent WebRTC calls (see run.py)."""
