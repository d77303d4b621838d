"""Where we meet libraries beyond their documented surface, one module per library (`fastrtc`, `aiortc`), each
saying exactly what it relies on, so that an upgrade is one module to review (`tests/test_adapters.py` fails on a
version nobody has reviewed, and on any other module of ours that patches either library).

May import: call, settings
Never imports: gradio, openai
"""
