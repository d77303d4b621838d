"""The pipeline engine: fastrtc's `ReplyOnPause` with a packaged VAD, and three OpenAI HTTP services."""
