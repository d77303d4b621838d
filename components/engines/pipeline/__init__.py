"""The pipeline engine: our own ears (`listening`), then three OpenAI HTTP services, on fastrtc's
`AsyncStreamHandler`."""
