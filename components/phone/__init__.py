"""The server and the phone line: one FastAPI app for the page, the WebRTC offer route, a Twilio number and
the live feed (`/outputs`), with one call limit for all of them."""
