"""The three tools the voice agent calls, as JSON schemas plus one dispatcher, :func:`run_tool`.

This is the contract between the model and the code: the model collects what
the guest says through ``update_reservation``, asks ``check_availability``
before offering times, and calls ``confirm_reservation`` only after the guest
agreed to the read-back. The code decides; the model relays. :func:`run_tool`
never raises: malformed arguments, unknown tools and even internal failures
come back as ``problems`` the model can speak about, so one bad call never
ends the phone call.

Every result has ``status``, ``reservation`` (all five fields, ``None`` when
unset), ``missing``, ``problems`` (``{field, code, message}``, this call's
first, then the draft's), ``booking_id`` and ``alternatives``;
``check_availability`` adds ``date``, ``hours`` and ``available_times``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from components.restaurant.fields import FIELDS, MAX_NAME_LENGTH, MAX_REQUESTS_LENGTH
from components.restaurant.problems import Code, Problem
from components.restaurant.session import ReservationSession

log = logging.getLogger(__name__)

_DATE = {"type": "string", "description": "Date as YYYY-MM-DD, in the restaurant's time zone."}
_TIME = {"type": "string", "description": "Start time as HH:MM, 24-hour clock (e.g. 18:30)."}
_PARTY = {"type": "integer", "description": "Number of guests."}

_SPECS: dict[str, tuple[str, dict]] = {
    "update_reservation": (
        (
            "Record what the guest has told you about their booking. Pass only the fields you learned or that "
            "changed; they are merged into this call's draft. The result lists problems (a refused value is not "
            "saved), the fields still missing, and nearby bookable alternatives when a date or time was refused."
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
            "properties": {"date": _DATE, "time": _TIME, "party_size": _PARTY},
            "required": ["date"],
            "additionalProperties": False,
        },
    ),
    "confirm_reservation": (
        (
            "Book the draft. Call only after reading the full booking back to the guest and hearing them agree. "
            "Returns the booking_id to read aloud, or problems (missing fields, fully booked, ...) to resolve first."
        ),
        {"type": "object", "properties": {}, "additionalProperties": False},
    ),
}

TOOL_NAMES: tuple[str, ...] = tuple(_SPECS)

_HANDLERS: dict[str, Callable[[ReservationSession, dict], dict]] = {
    "update_reservation": lambda session, arguments: session.update(arguments),
    "check_availability": lambda session, arguments: session.check_availability(arguments),
    "confirm_reservation": lambda session, _arguments: session.confirm(),  # no arguments; any given are ignored
}


def realtime_tools() -> list[dict]:
    """Tool definitions in the OpenAI Realtime API's ``session.tools`` format."""
    return [
        {"type": "function", "name": name, "description": description, "parameters": parameters}
        for name, (description, parameters) in _SPECS.items()
    ]


def chat_tools() -> list[dict]:
    """The same tools in the Chat Completions ``tools`` format."""
    return [
        {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}
        for name, (description, parameters) in _SPECS.items()
    ]


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
    except Exception:
        log.exception("tool %s failed with arguments %r", name, arguments)
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
