"""A local stand-in for Twilio's REST API (`https://api.twilio.com`), reached by the real `twilio` SDK through its
own HTTP client (requests), which honours `HTTPS_PROXY` and `REQUESTS_CA_BUNDLE` (`tests.proxied_https`).

It serves what the app uses, as Twilio documents it (Basic auth with the account SID and auth token):

* `POST /2010-04-01/Accounts/{AccountSid}/Messages.json` (form fields `To`, `Body`, and `From` or
  `MessagingServiceSid`): a Message resource (201), or Twilio's error JSON: 21604/21602/21603 for a missing
  `To`/`Body`/sender, 21610 for a number that replied STOP (`unsubscribed`);
* `POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json` (`Twiml`, `Url`, `Status`, ...): updating a live
  call, answered with its Call resource; a call not in progress (`live_calls`) is 21220;
* 20003 for bad credentials, 20404 for anything else. Unknown form fields are refused (400): the SDK sends only
  what it documents.

    with FakeTwilioApi(tmp_path, account_sid, auth_token) as twilio:
        twilio.reached_through(monkeypatch)
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import secrets
import threading
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.proxied_https import ProxiedHttps

MESSAGE_FIELDS = {  # Twilio's Create Message parameters
    "To", "From", "MessagingServiceSid", "Body", "MediaUrl", "ContentSid", "ContentVariables", "StatusCallback",
    "ApplicationSid", "MaxPrice", "ProvideFeedback", "Attempt", "ValidityPeriod", "ForceDelivery",
    "ContentRetention", "AddressRetention", "SmartEncoded", "PersistentAction", "ShortenUrls", "ScheduleType",
    "SendAt", "SendAsMms", "RiskCheck", "TrafficType",
}  # fmt: skip
CALL_FIELDS = {"Url", "Method", "Status", "FallbackUrl", "FallbackMethod", "StatusCallback", "StatusCallbackMethod",
               "Twiml", "TimeLimit"}  # fmt: skip
_MESSAGES = re.compile(r"^/2010-04-01/Accounts/(AC[0-9a-f]{32})/Messages\.json$")
_CALL = re.compile(r"^/2010-04-01/Accounts/(AC[0-9a-f]{32})/Calls/(CA[0-9A-Za-z]{32})\.json$")


@dataclass(frozen=True)
class Text:
    to: str
    sender: str
    body: str


class FakeTwilioApi(ProxiedHttps):
    host = "api.twilio.com"

    def __init__(self, folder: Path, account_sid: str, auth_token: str) -> None:
        super().__init__(folder)
        self.account_sid, self.auth_token = account_sid, auth_token
        self.unsubscribed: set[str] = set()  # numbers that replied STOP on Twilio's side
        self.texts: list[Text] = []
        self.live_calls: set[str] = set()  # CallSids in progress (the test says which)
        self.call_updates: list[tuple[str, dict[str, str]]] = []  # (CallSid, the form) for each update
        self.refused: list[int] = []  # error codes answered
        self._lock = threading.Lock()

    def reached_through(self, monkeypatch: Any) -> None:
        """Point the SDK's HTTP client (requests) at this fake; local servers (the app, other fakes) stay direct."""
        monkeypatch.setenv("HTTPS_PROXY", self.proxy_url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(self.ca_file))

    def answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[str, Any]:
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        if headers.get("authorization") != f"Basic {expected}":
            return self._error(401, 20003, "Authenticate")
        form = urllib.parse.parse_qs(body.decode(), keep_blank_values=True)
        call = _CALL.fullmatch(urllib.parse.urlsplit(path).path)
        if method == "POST" and call and call[1] == self.account_sid:
            return self._update_call(call[2], form)
        match = _MESSAGES.fullmatch(urllib.parse.urlsplit(path).path)
        if method != "POST" or not match or match[1] != self.account_sid:
            return self._error(404, 20404, f"The requested resource {path} was not found")
        unknown = sorted(set(form) - MESSAGE_FIELDS)
        if unknown:
            return self._error(400, 20001, f"Unknown parameters: {', '.join(unknown)}")
        value = {name: values[-1] for name, values in form.items()}
        if not value.get("To"):
            return self._error(400, 21604, "A 'To' phone number is required.")
        if not value.get("Body"):
            return self._error(400, 21602, "Message body is required.")
        sender = value.get("From") or value.get("MessagingServiceSid")
        if not sender:
            return self._error(400, 21603, "A 'From' phone number is required.")
        if value["To"] in self.unsubscribed:
            return self._error(400, 21610, "Attempt to send to unsubscribed recipient")
        with self._lock:
            self.texts.append(Text(value["To"], sender, value["Body"]))
        return "201 Created", self._message(value)

    def _update_call(self, call_sid: str, form: dict[str, list[str]]) -> tuple[str, Any]:
        unknown = sorted(set(form) - CALL_FIELDS)
        if unknown:
            return self._error(400, 20001, f"Unknown parameters: {', '.join(unknown)}")
        if call_sid not in self.live_calls:
            return self._error(400, 21220, "Call is not in-progress. Cannot redirect.")
        value = {name: values[-1] for name, values in form.items()}
        if not value.get("Twiml") and not value.get("Url") and value.get("Status") not in ("canceled", "completed"):
            return self._error(400, 21201, "No 'Url' or 'Twiml' provided")
        with self._lock:
            self.call_updates.append((call_sid, value))
        now = dt.datetime.now(dt.UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")
        return "200 OK", {
            "sid": call_sid, "account_sid": self.account_sid, "api_version": "2010-04-01", "status": "in-progress",
            "direction": "inbound", "from": "+819000000001", "to": "+815012345678", "date_created": now,
            "date_updated": now, "start_time": now, "end_time": None, "duration": None, "price": None,
            "price_unit": "USD", "parent_call_sid": None, "phone_number_sid": None, "answered_by": None,
            "forwarded_from": None, "caller_name": None, "group_sid": None, "queue_time": "0", "trunk_sid": None,
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Calls/{call_sid}.json", "subresource_uris": {},
        }  # fmt: skip

    def _message(self, value: dict[str, str]) -> dict[str, Any]:
        sid = "SM" + secrets.token_hex(16)
        now = dt.datetime.now(dt.UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")
        uri = f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json"
        return {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": value["Body"],
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": value.get("From"),
            "messaging_service_sid": value.get("MessagingServiceSid"),
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "accepted" if "MessagingServiceSid" in value else "queued",
            "subresource_uris": {"media": uri.replace(".json", "/Media.json")},
            "to": value["To"],
            "uri": uri,
        }

    def _error(self, status: int, code: int, message: str) -> tuple[str, Any]:
        with self._lock:
            self.refused.append(code)
        reason = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}[status]
        body = {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}"}
        return f"{status} {reason}", {**body, "status": status}
