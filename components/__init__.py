"""The voicebot's parts, by concern: the restaurant scenario (`restaurant`), where bookings live (`store`), the
engine-independent call (`call`), the voice engines (`engines`), and the ways in: the page (`web`), the owner's
console (`console`), the phone line (`phone`) and the one server they share (`server`). `settings` reads the
environment once, at start.

Each package's docstring says what it may import; `tests/test_layers.py` checks it.
"""
