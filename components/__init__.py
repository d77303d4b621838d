"""The restaurant voicebot's building blocks: domain (config, rules, store, tools, prompt) and transport (voice handlers)."""
