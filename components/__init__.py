"""The voicebot's parts, by concern: the restaurant scenario, the engine-independent call, the two voice engines,
and the ways in (the web page and the phone line/server). Deployment settings from the environment in `settings`.
"""
