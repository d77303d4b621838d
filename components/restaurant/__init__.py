"""The restaurant scenario: config, booking rules, the call's draft, the tools, the lookups and the prompt.

Pure domain: no audio, no network, no database code. It reads and writes bookings only through the `BookingBook`
protocol (`book`), which `store/` implements, so it is tested as plain functions and shared by every engine.

May import: settings
Never imports: fastrtc, gradio, openai, sqlalchemy, psycopg, httpx, websockets
"""
