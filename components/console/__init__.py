"""The owner's console: the bookings, the day's load, callback requests, changes and exports, for the
restaurant only (`access` decides who that is).

May import: call, restaurant, store, settings, web
"""
