"""Putting a phone caller through to the staff (`STAFF_PHONE`), a cold transfer with a sentence first.

The agent is given `transfer_to_staff` only on the phone, only when `STAFF_PHONE` is set, and only during staff
hours (`STAFF_HOURS`, else the day's opening hours). When the model calls it, the agent says its one sentence,
then `StaffHandover.put_through` redirects the live call through Twilio's REST API to TwiML that says so in
Twilio's voice and `<Dial>`s the staff. Twilio reports how the dial went to `/telephone/transferred`
(`PhoneLine.transferred`): answered, the call simply ends there; not answered (busy, no answer, failed), the
owner's console gets a *transfer_missed* entry and the caller is connected back to the agent, which apologises
and takes a callback request. Slang admits it cannot tell whether a transfer was answered; Twilio's `DialCallStatus`
tells us.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from twilio.base.exceptions import TwilioException
from twilio.rest import Client
from twilio.twiml.voice_response import Dial, VoiceResponse

from components.restaurant.config import RestaurantConfig
from components.restaurant.rules import opening
from components.settings import StaffSettings

log = logging.getLogger(__name__)

DIAL_TIMEOUT_S = 20  # how long the staff's phone rings before the caller comes back to the agent
SAY = {
    "ja": ("ja-JP", "スタッフにおつなぎします。そのままお待ちください。"),
    "en": ("en-US", "Putting you through to our staff. Please hold."),
}
MISSED = {
    "ja": ("ja-JP", "申し訳ございません。ただいまスタッフが電話に出られません。AIの受付に戻ります。"),
    "en": ("en-US", "Sorry, nobody from our staff can answer right now. Back to our assistant."),
}


class StaffHandover:
    """One phone call's way to the staff: when they are there, and redirecting the call to them."""

    def __init__(
        self,
        staff: StaffSettings,
        config: RestaurantConfig,
        call_sid: str,
        action_url: str,
        say_voice: str | None = None,
        client: Client | None = None,
    ) -> None:
        self.staff = staff
        self.config = config
        self.call_sid = call_sid
        self.action_url = action_url  # `/telephone/transferred` at the address Twilio reached us on
        self.say_voice = say_voice
        self.client = client or Client(staff.account_sid, staff.auth_token)

    def available(self, now: dt.datetime) -> bool:
        """Someone is there: within `STAFF_HOURS` (every day), else within the day's opening hours."""
        local = now.astimezone(self.config.tz)
        if self.staff.hours is not None:
            start, end = self.staff.hours
            return start <= local.time() < end
        hours = opening(local.date(), self.config)
        return hours is not None and hours.open <= local.time() < hours.close

    def twiml(self, language: str) -> str:
        locale, words = SAY["en" if language == "en" else "ja"]
        response = VoiceResponse()
        response.say(words, language=locale, **({"voice": self.say_voice} if self.say_voice else {}))
        dial = Dial(timeout=DIAL_TIMEOUT_S, action=self.action_url, method="POST")
        dial.number(self.staff.phone)
        response.append(dial)
        return str(response)

    async def put_through(self, language: str) -> bool:
        try:
            await asyncio.to_thread(self.client.calls(self.call_sid).update, twiml=self.twiml(language))
        except TwilioException as failed:
            log.warning("Could not put a call through to the staff: %s", getattr(failed, "code", type(failed).__name__))
            return False
        log.info("Put a call through to the staff.")
        return True
