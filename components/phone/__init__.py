"""The phone line, one of the two doors into the server (`server/`): a Twilio number's webhooks (`twilio`) and its
Media Streams (`media`), answered by the same voice agent as the page.

May import: adapters, call, restaurant, settings, web
"""
