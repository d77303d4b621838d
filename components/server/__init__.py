"""The one server every way in goes through: the Gradio page and the phone line are two doors into it.

`run` builds the FastAPI app (the page at `/`, the routes of `routes`) and runs it; `routes` holds the WebRTC offer
route, the Twilio routes (handed to `phone/`) and the live feed (`feed`); `limits` is the one call limit that page,
offer route and phone share; `startup` is what runs once before the first call.

May import: adapters, call, console, engines, phone, restaurant, settings, store, web
"""
