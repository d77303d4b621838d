"""What a call is, whatever engine speaks it: its request and options, the transcript and card, notices, the
clock, the demo's allowances, the local barge-in and the one ending. Transport-free: it speaks its own types, and
each engine adapts them to fastrtc.

May import: restaurant, store, settings
Never imports: fastrtc, gradio, openai
"""
