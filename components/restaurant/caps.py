"""How much one caller may ask of the restaurant, whatever they say: caps that live in code and span calls.

A call makes at most one new booking (its draft freezes once booked), but a script can call again and again, on
its own key, and fill every table, or push the real callback requests out of the owner's list. So bookings and
callback requests are also capped per caller per day, and lookup misses (guessing booking numbers) per caller per
day, counted in the store's `Tally` so that hanging up and calling again resets nothing. Waitlist places count with
the callback requests' daily cap (both ask the staff to come back to the guest). The owner sets the caps
(`BOOKINGS_PER_CALLER_PER_DAY`, `CALLBACKS_PER_CALL`, `CALLBACKS_PER_CALLER_PER_DAY`); a guest with a real need
beyond them is asked to call the restaurant.
"""

from __future__ import annotations

import datetime as dt

from components.settings import Caps

__all__ = ["BOOKING", "CALLBACK", "DAY", "LOOKUP_MISS", "WAITLIST", "Caps"]

LOOKUP_MISS, BOOKING, CALLBACK, WAITLIST = "lookup_miss", "booking", "callback", "waitlist"  # the kinds counted
DAY = dt.timedelta(days=1)
