"""The voicebot's parts: the restaurant domain (config, rules, store, tools, prompt) and the voice transport."""
