"""The tools the voice agent calls, as JSON schemas plus one dispatcher, :func:`run_tool`.

This is the contract between the model and the code: the model collects what the guest says through
``update_reservation``, asks ``check_availability`` before offering times, and calls ``confirm_reservation``
only after the guest agreed to the read-back. An existing booking is looked up with ``find_reservation`` (it
then becomes the draft: changed with the same two tools, or cancelled with ``cancel_reservation``). When no
booking can help, ``request_callback`` leaves a request for the staff, and ``get_restaurant_info`` answers from
the restaurant's own facts. The code decides; the model relays. :func:`run_tool` never raises: malformed
arguments, unknown tools, a database that is down and even internal failures come back as ``problems`` the
model can speak about, so one bad call never ends the phone call.

Every result has ``status`` (collecting, ready, confirmed, cancelled), ``mode`` (new, change), ``reservation``
(every field, ``None`` when unset, the phone number masked), ``missing``, ``problems`` (``{field, code,
message}``, this call's first, then the draft's), ``booking_id``, ``changing`` (the booking looked up),
``alternatives`` and ``callback_requested``; ``check_availability`` adds ``date``, ``hours`` and
``available_times``, ``get_restaurant_info`` adds ``topic`` and ``answer``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from components.restaurant.book import StoreUnavailable
from components.restaurant.config import FACT_TOPICS
from components.restaurant.fields import FIELDS, MAX_NAME_LENGTH, MAX_REQUESTS_LENGTH
from components.restaurant.problems import Code, Problem
from components.restaurant.session import ReservationSession

log = logging.getLogger(__name__)

_DATE = {"type": "string", "description": "Date as YYYY-MM-DD, in the restaurant's time zone."}
_TIME = {"type": "string", "description": "Start time as HH:MM, 24-hour clock (e.g. 18:30)."}
_PARTY = {"type": "integer", "description": "Number of guests."}
_PHONE = {"type": "string", "description": "The guest's phone number, if they are happy to give it (digits)."}
_SEATING = {
    "type": "string",
    "description": "Where the guest would like to sit: one of the restaurant's seating areas named in your "
    "instructions (e.g. counter). An empty string means anywhere.",
}

_SPECS: dict[str, tuple[str, dict]] = {
    "update_reservation": (
        (
            "Record what the guest has told you about their booking: a new one, the one you looked up, or the one "
            "booked or changed on this call (a change to it keeps its number). Pass only the fields you learned or "
            "that changed; they are merged into this call's draft. The result lists "
            "problems (a refused value is not saved), the fields still missing, and nearby bookable alternatives "
            "when a date or time was refused."
        ),
        {
            "type": "object",
            "properties": {
                "guest_name": {
                    "type": "string",
                    "description": f"Name the booking is under (at most {MAX_NAME_LENGTH} characters).",
                },
                "date": _DATE,
                "time": _TIME,
                "party_size": _PARTY,
                "requests": {
                    "type": "string",
                    "description": f"Special requests such as allergies or a birthday (at most {MAX_REQUESTS_LENGTH} "
                    "characters). An empty string clears them.",
                },
                "phone": _PHONE,
                "seating": _SEATING,
            },
            "additionalProperties": False,
        },
    ),
    "check_availability": (
        (
            "List the start times that can still be booked on a date, before offering or accepting a time. With a "
            "time, also says whether that time can be booked and suggests the nearest alternatives if not. Does not "
            "change the draft."
        ),
        {
            "type": "object",
            "properties": {"date": _DATE, "time": _TIME, "party_size": _PARTY, "seating": _SEATING},
            "required": ["date"],
            "additionalProperties": False,
        },
    ),
    "confirm_reservation": (
        (
            "Book the draft, or save the change of the booking you looked up (under the same booking number). Call "
            "only after reading the full booking back to the guest and hearing them agree. Returns the booking_id to "
            "read aloud, or problems (missing fields, fully booked, ...) to resolve first."
        ),
        {"type": "object", "properties": {}, "additionalProperties": False},
    ),
    "find_reservation": (
        (
            "Look up the guest's existing booking to change or cancel it: its booking number and the name it is "
            "under. A match becomes this call's draft (marked as a change of that booking); a miss only says "
            "not_found. After three misses on one call no more lookups are possible: offer a staff callback."
        ),
        {
            "type": "object",
            "properties": {
                "booking_id": {"type": "string", "description": "The booking number, e.g. AS-7K3-QM2."},
                "guest_name": {"type": "string", "description": "The name the booking is under."},
            },
            "required": ["booking_id"],
            "additionalProperties": False,
        },
    ),
    "cancel_reservation": (
        (
            "Cancel the booking you looked up with find_reservation, or the one booked or changed on this call. "
            "Call only after reading that booking back and hearing the guest clearly ask to cancel it."
        ),
        {"type": "object", "properties": {}, "additionalProperties": False},
    ),
    "request_callback": (
        (
            "Leave a request for the restaurant's staff to call the guest back, when you cannot help: a party too "
            "large, no free time that suits, or a question the restaurant's information does not answer. Offer "
            "bookable alternatives first. The name and number default to the draft's."
        ),
        {
            "type": "object",
            "properties": {
                "guest_name": {"type": "string", "description": "Who to ask for."},
                "phone": _PHONE,
                "request": {
                    "type": "string",
                    "description": f"What the guest would like, in one sentence (at most {MAX_REQUESTS_LENGTH} chars).",
                },
            },
            "required": ["request"],
            "additionalProperties": False,
        },
    ),
    "join_waitlist": (
        (
            "Put the guest on the waitlist for the draft's date, time and party size, when that slot is fully booked "
            "and none of the alternatives suits them. Needs their name and phone number; tell them they will be "
            "contacted if a table frees up, and that this is not a booking."
        ),
        {"type": "object", "properties": {}, "additionalProperties": False},
    ),
    "get_restaurant_info": (
        (
            "The restaurant's own answer to a guest's question about one topic. Answer questions only from what this "
            "returns; when it has no answer (or the question fits no topic: use other), say you do not know and "
            "offer a staff callback. Never guess."
        ),
        {
            "type": "object",
            "properties": {"topic": {"type": "string", "enum": [*FACT_TOPICS, "other"]}},
            "required": ["topic"],
            "additionalProperties": False,
        },
    ),
}

TOOL_NAMES: tuple[str, ...] = tuple(_SPECS)
TRANSFER = "transfer_to_staff"  # the phone line's own tool (`call.Call` runs it): offered only where it can work
_TRANSFER_SPEC = (
    (
        "Hand the phone call over to a member of staff, when the caller asks for a person or needs what you cannot "
        "do. Say one short sentence first (that you are putting them through). If nobody answers, the call comes "
        "back to you: then offer to take a callback request."
    ),
    {"type": "object", "properties": {}, "additionalProperties": False},
)

_HANDLERS: dict[str, Callable[[ReservationSession, dict], dict]] = {
    "update_reservation": lambda session, arguments: session.update(arguments),
    "check_availability": lambda session, arguments: session.check_availability(arguments),
    "confirm_reservation": lambda session, _arguments: session.confirm(),  # no arguments; any given are ignored
    "find_reservation": lambda session, arguments: session.find(
        arguments.get("booking_id"), arguments.get("guest_name")
    ),
    "cancel_reservation": lambda session, _arguments: session.cancel(),
    "request_callback": lambda session, arguments: session.request_callback(arguments),
    "join_waitlist": lambda session, _arguments: session.join_waitlist(),
    "get_restaurant_info": lambda session, arguments: session.info(arguments.get("topic")),
}


def realtime_tools(transfer: bool = False) -> list[dict]:
    """Tool definitions in the OpenAI Realtime API's ``session.tools`` format (with the hand-over to staff when
    ``transfer``)."""
    return [
        {"type": "function", "name": name, "description": description, "parameters": parameters}
        for name, (description, parameters) in _specs(transfer).items()
    ]


def chat_tools(transfer: bool = False) -> list[dict]:
    """The same tools in the Chat Completions ``tools`` format."""
    return [
        {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}
        for name, (description, parameters) in _specs(transfer).items()
    ]


def _specs(transfer: bool) -> dict[str, tuple[str, dict]]:
    return {**_SPECS, TRANSFER: _TRANSFER_SPEC} if transfer else _SPECS


class _BadArguments(ValueError):
    pass


def run_tool(session: ReservationSession, name: str, arguments: str | dict | None) -> dict:
    """Run tool ``name`` with the model's ``arguments`` (a JSON string, a dict or nothing); never raises."""
    try:
        if name not in _HANDLERS:
            return session.report(Problem(Code.UNKNOWN_TOOL, None, {"name": name, "tools": ", ".join(TOOL_NAMES)}))
        try:
            parsed = _parse_arguments(arguments)
        except _BadArguments as error:
            return session.report(Problem(Code.INVALID_ARGUMENTS, None, {"detail": str(error)}))
        return _HANDLERS[name](session, parsed)
    except StoreUnavailable as unavailable:
        log.warning("tool %s: the booking store is unavailable (%s)", name, unavailable)
        return session.report(Problem(Code.STORE_UNAVAILABLE), check=False)
    except Exception:
        log.exception("tool %s failed", name)  # not the arguments: they hold the guest's name and number
        return session.report(Problem(Code.INTERNAL_ERROR), check=False)


def _parse_arguments(arguments: object) -> dict:
    """The arguments as a dict; no arguments at all reads as ``{}``."""
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        return {}
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError as error:
            raise _BadArguments(f"invalid JSON: {error.msg}") from error
    if not isinstance(arguments, dict):
        raise _BadArguments(f"expected a JSON object with fields like {', '.join(FIELDS)}")
    return arguments
