"""The restaurant scenario: config, booking rules, the store, the call's draft, the tools and the prompt.

Pure domain: no audio and no network, so it is tested as plain functions and shared by every engine.
"""
