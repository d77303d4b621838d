"""A stranger with a script against the running app: each attack goes through the real routes (`queue/join`, the
offer, the phone socket, the sign-in event), from addresses of its own, and the real visitor or owner is not hurt.

The app runs as `python app.py` (and `--server`) in a subprocess. The test client connects from this machine, which
the app trusts as its proxy (as a Space's own proxy is trusted), so `X-Forwarded-For` says which address each
request comes from, exactly as the proxy would append it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from components.console.views import bookings_csv
from components.server.limits import STREAM_START_S
from tests.browser import AppProcess
from tests.twilio_caller import TwilioCaller

APP = Path(__file__).resolve().parent.parent / "app.py"
DB = Path()  # the module app's booking database (set by the fixture)
CODE = "s3cret-code"
PASSWORD = "owner-password-for-security-tests"
pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    """The demo as a Space serves it: the owner's key (never reached: no call is placed), an access code, a daily
    allowance of one call per visitor, a password for the console."""
    tmp = tmp_path_factory.mktemp("security")
    global DB
    DB = tmp / "reservations.db"
    env = {
        "OPENAI_API_KEY": "sk-owner-key-never-used",
        "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
        "RESERVATIONS_DB": str(DB),
        "DEMO_ACCESS_CODE": CODE,
        "CALLS_PER_VISITOR_PER_DAY": "1",
        "OWNER_PASSWORD": PASSWORD,
        "MAX_CONCURRENT_CALLS": "3",
    }
    with AppProcess(APP, tmp / "logs", env=env) as running:
        yield running


def events(app: AppProcess) -> dict[str, tuple[int, int | None]]:
    """The page's Gradio events by name: (fn_index, trigger component id)."""
    config = httpx.get(f"{app.url}config", timeout=10).json()
    elem = {component["id"]: component.get("props", {}).get("elem_id") for component in config["components"]}
    found = {}
    for dependency in config["dependencies"]:
        target, trigger = dependency["targets"][0]
        found[f"{elem.get(target) or target}.{trigger}"] = (dependency["id"], target)
    return found


def named_events(app: AppProcess) -> list[tuple[int, int | None, str | None]]:
    """The page's events with their API names: (fn_index, trigger component id, api_name)."""
    config = httpx.get(f"{app.url}config", timeout=10).json()
    return [(dep["id"], dep["targets"][0][0], dep.get("api_name")) for dep in config["dependencies"]]


def client(address: str) -> dict[str, str]:
    return {"x-forwarded-for": address}


async def run_event(
    http: httpx.AsyncClient,
    app: AppProcess,
    event: tuple[int, int | None],
    data: list[Any],
    address: str,
    query: str = "",
    session: str | None = None,
) -> list[Any]:
    """Join the queue for one event, as the page does (with the page's own query string and session, a new one by
    default), and read its result from the queue's event stream."""
    session = session or uuid.uuid4().hex
    fn_index, trigger = event
    body = {"data": data, "fn_index": fn_index, "trigger_id": trigger, "session_hash": session, "event_data": None}
    joined = await http.post(f"{app.url}gradio_api/queue/join{query}", json=body, headers=client(address))
    joined.raise_for_status()
    async with http.stream("GET", f"{app.url}gradio_api/queue/data", params={"session_hash": session}) as stream:
        async for line in stream.aiter_lines():
            if line.startswith("data:"):
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed":
                    return message["output"].get("data") or [message["output"]]
    raise AssertionError("the event never completed")


async def join(
    http: httpx.AsyncClient, app: AppProcess, event: tuple[int, int | None], data: list[Any], address: str
) -> int:
    """Join the queue for one event and leave without reading the answer; the HTTP status."""
    fn_index, trigger = event
    body = {"data": data, "fn_index": fn_index, "trigger_id": trigger, "session_hash": uuid.uuid4().hex}
    answer = await http.post(
        f"{app.url}gradio_api/queue/join", json={**body, "event_data": None}, headers=client(address)
    )
    return answer.status_code


def rss_mb(app: AppProcess) -> float:
    assert app.proc is not None
    for line in Path(f"/proc/{app.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.parametrize(
    "addresses",
    [1, 200],
    ids=["from-one-client", "from-200-addresses"],
)
def test_two_thousand_made_up_call_ids_leave_the_queue_and_the_page_as_they_were(app: AppProcess, addresses) -> None:
    """One client sends 2,000 joins of the transcript updater with made-up call ids (as measured in the issue);
    then 200 addresses share them, so that each stays within its own rate and every join reaches the queue."""
    follow = events(app)["call-live.state_change"]
    idle_card = next(event for event in named_events(app) if event[2] == "idle_card")[:2]

    async def attack() -> tuple[list[float], list[float], float, float, list[int]]:
        async with httpx.AsyncClient(timeout=30) as http:

            async def timed() -> tuple[float, float]:
                started = time.monotonic()
                await run_event(http, app, idle_card, ["en"], "198.51.100.1")
                event_s = time.monotonic() - started
                started = time.monotonic()
                (await http.get(app.url, headers=client("198.51.100.1"))).raise_for_status()
                return event_s, time.monotonic() - started

            await timed()  # warm
            before = [await timed() for _ in range(3)]
            rss_before = rss_mb(app)
            statuses = []

            async def join(n: int) -> None:
                body = {"data": [f"made-up-{n}"], "fn_index": follow[0], "trigger_id": follow[1],
                        "session_hash": f"attacker{addresses}-{n}", "event_data": None}  # fmt: skip
                address = f"10.{n % addresses // 250}.{n % addresses % 250}.{addresses}"
                answer = await http.post(f"{app.url}gradio_api/queue/join", json=body, headers=client(address))
                statuses.append(answer.status_code)

            for start in range(0, 2000, 100):
                await asyncio.gather(*(join(n) for n in range(start, start + 100)))
            await asyncio.sleep(1.0)  # every made-up follower has given up by now
            after = [await timed() for _ in range(3)]
            return before, after, rss_before, rss_mb(app), statuses

    before, after, rss_before, rss_after, statuses = asyncio.run(attack())
    assert max(event for event, _ in after) < max(1.0, 3 * max(event for event, _ in before)), (before, after)
    assert max(page for _, page in after) < max(1.0, 3 * max(page for _, page in before)), (before, after)
    if addresses == 1:  # one client gets its rate's worth in; the rest are told to slow down, and cost nothing
        assert statuses.count(200) <= 70 and set(statuses) == {200, 429}
        assert rss_after - rss_before < 20, (rss_before, rss_after)
    else:  # most joins got in; the rest found the queue full (its bound for everyone together), never an error
        assert statuses.count(200) >= 500 and set(statuses) <= {200, 503}, sorted(set(statuses))


def component_offer(app: AppProcess, session: str, address: str, sdp: str) -> dict[str, Any]:
    """An offer to the page's call widget, as the page sends it (Gradio's component server, the page's session)."""
    component = events(app)["call-live.state_change"][1]
    body = {"sdp": sdp, "type": "offer", "webrtc_id": f"call{uuid.uuid4().hex[:12]}"}
    payload = {"session_hash": session, "component_id": component, "fn_name": "offer", "data": body}
    answer = httpx.post(f"{app.url}gradio_api/component_server/", json=payload, headers=client(address), timeout=15)
    return answer.json()


def load_page(app: AppProcess, address: str, query: str = f"?code={CODE}") -> str:
    """Open the page as a browser does (its load event, with the link's query string); the page's session."""
    welcome = next(event for event in named_events(app) if event[2] == "welcome")[:2]
    session = uuid.uuid4().hex

    async def load() -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            await run_event(http, app, welcome, ["en"], address, query, session=session)

    asyncio.run(load())
    return session


def test_one_address_cannot_hold_the_lines_with_offers_that_never_connect(app: AppProcess) -> None:
    sdp = asyncio.run(audio_offer_sdp())
    stray_address = "203.0.113.66"
    strays = [component_offer(app, load_page(app, stray_address), stray_address, sdp) for _ in range(3)]
    real = component_offer(app, load_page(app, "198.51.100.20"), "198.51.100.20", sdp)

    assert [stray.get("status") for stray in strays[:2]] != ["failed", "failed"], strays  # a visitor's two tabs
    assert strays[2] == {"status": "failed", "meta": {"error": "concurrency_limit_reached", "limit": 2}}
    assert real.get("status") != "failed" and real.get("type") == "answer", real  # elsewhere, a line is free
    # None of them started a call: each is hung up on once its start time is over, and the lines are free again.
    time.sleep(STREAM_START_S + 1)
    again = [component_offer(app, load_page(app, stray_address), stray_address, sdp) for _ in range(2)]
    assert [offer.get("type") for offer in again] == ["answer", "answer"], again
    time.sleep(STREAM_START_S + 1)  # and those two end the same way, for the tests after this one


def test_an_offer_from_a_page_that_was_never_loaded_gets_no_peer_connection(app: AppProcess) -> None:
    sdp = asyncio.run(audio_offer_sdp())
    script = component_offer(app, uuid.uuid4().hex, "203.0.113.79", sdp)  # a made-up session, no page load
    page = component_offer(app, load_page(app, "203.0.113.79"), "203.0.113.79", sdp)

    assert script["status"] == "failed" and script["meta"]["error"] == "not_admitted" and "sdp" not in script
    assert "Reload the page, then try again." in script["meta"]["message"]
    assert page.get("type") == "answer" and page.get("sdp"), page


async def audio_offer_sdp() -> str:
    """A browser-like WebRTC offer for one audio track (aiortc), never followed by a connection."""
    from aiortc import RTCPeerConnection

    pc = RTCPeerConnection()
    pc.addTransceiver("audio", direction="sendrecv")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


def test_a_spoofed_forwarded_address_does_not_buy_a_second_allowance(app: AppProcess) -> None:
    from components.call.allowance import Allowance
    from components.restaurant.config import load_config
    from components.settings import DemoLimits
    from components.store.reservations import ReservationStore

    welcome = next(event for event in named_events(app) if event[2] == "welcome")[:2]
    now = dt.datetime.now(dt.UTC)
    day = Allowance(DemoLimits(calls_per_visitor=1), ReservationStore(DB).usage, load_config()).day(now)
    used = ReservationStore(DB).usage.admit(  # 203.0.113.70 has made today's one call
        "call-1", day=day, visitor="ip:203.0.113.70", engine="live", now=now, per_visitor=1
    )
    assert used

    async def loads() -> list[str]:
        async with httpx.AsyncClient(timeout=30) as http:
            shown = []
            for spoof in ("1.1.1.1", "2.2.2.2"):  # what the client wrote, then the address the proxy appended
                answer = await run_event(http, app, welcome, ["en"], f"{spoof}, 203.0.113.70", f"?code={CODE}")
                shown.append(json.dumps(answer, ensure_ascii=False))
            return shown

    for shown in asyncio.run(loads()):
        assert "You have used today's 1 demo call(s)" in shown and "Demo calls left" not in shown


def test_the_access_code_cannot_be_found_by_guessing(app: AppProcess) -> None:
    welcome = next(event for event in named_events(app) if event[2] == "welcome")[:2]

    async def tries() -> tuple[str, list[str], str]:
        async with httpx.AsyncClient(timeout=30) as http:
            right = await run_event(http, app, welcome, ["en"], "198.51.100.30", f"?code={CODE}")
            guesses = [
                json.dumps(await run_event(http, app, welcome, ["en"], "203.0.113.90", f"?code=guess{n}"))
                for n in range(6)
            ]
            late = await run_event(http, app, welcome, ["en"], "203.0.113.90", f"?code={CODE}")
            return json.dumps(right), guesses, json.dumps(late)

    right, guesses, late = asyncio.run(tries())
    assert "Demo calls left today: 1" in right
    assert all("open the link you were given" in guess for guess in guesses)
    assert "open the link you were given" in late  # after five wrong codes, even the right one is not honoured


def test_fifty_wrong_passwords_from_elsewhere_do_not_keep_the_owner_waiting(app: AppProcess) -> None:
    sign_in = events(app)["owner-sign-in.click"]

    async def scenario() -> tuple[float, float, list[Any]]:
        async with httpx.AsyncClient(timeout=60) as http:
            started = time.monotonic()
            await run_event(http, app, sign_in, [PASSWORD, "", "confirmed", "", False], "198.51.100.9")
            alone = time.monotonic() - started
            during = []
            for burst in range(2):  # the first burst also warms the server's code paths up; the second is measured
                joined = await asyncio.gather(  # a script fires its guesses and does not wait for the answers
                    *(
                        join(http, app, sign_in, [f"guess{n}", "", "confirmed", "", False], f"203.0.113.{n % 5}")
                        for n in range(burst * 50, burst * 50 + 50)
                    )
                )
                assert joined == [200] * 50
                started = time.monotonic()
                owner = await run_event(http, app, sign_in, [PASSWORD, "", "confirmed", "", False], "198.51.100.9")
                during.append(time.monotonic() - started)
                await asyncio.sleep(1.0)
            return alone, during[-1], owner

    alone, during, owner = asyncio.run(scenario())
    assert during < alone + 1.0, (alone, during)
    assert owner[1] == "", owner  # no "wrong password", no "try again in": the console opened


def test_the_upload_route_is_refused(app: AppProcess) -> None:
    answer = httpx.post(f"{app.url}gradio_api/upload", files={"files": ("big.bin", b"\0" * 1024)}, timeout=10)
    assert answer.status_code == 403


def test_a_guest_named_like_a_formula_is_text_in_the_export() -> None:
    rows = [{"booking_id": "AS-7K3-QM2", "guest_name": '=HYPERLINK("http://x.example","Click")', "date": "2026-04-21",
             "time": "19:00", "party_size": 2, "requests": "@SUM(1+1)", "phone": "+819012345678", "status": "confirmed",
             "source": "web", "created_at": "2026-04-20T00:00:00+00:00"}]  # fmt: skip
    text = bookings_csv(rows, show_phone=True).decode("utf-8-sig")
    assert "'=HYPERLINK" in text and "'@SUM" in text and "'+819012345678" in text
    assert ",=" not in text and ",@" not in text


STRAY_SDP = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    """`python app.py --server` with no `TWILIO_AUTH_TOKEN` (and no opt-out): the phone line is not served."""
    tmp = tmp_path_factory.mktemp("security-server")
    env = {
        "OPENAI_API_KEY": "sk-owner-key-never-used",
        "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
        "RESERVATIONS_DB": str(tmp / "reservations.db"),
        "DEMO_ACCESS_CODE": CODE,
        "TWILIO_AUTH_TOKEN": "",
        "TWILIO_VALIDATE_SIGNATURE": "true",
    }
    with AppProcess(APP, tmp / "logs", env=env, args=("--server",)) as running:
        yield running


def test_without_twilios_token_the_phone_socket_and_webhook_refuse_strangers(server: AppProcess) -> None:
    async def stranger() -> int:
        try:
            async with TwilioCaller(f"ws://127.0.0.1:{server.port}/telephone/handler") as caller:
                await caller.until(lambda: caller.closed_at, what="the stranger's stream to be closed")
        except websockets.InvalidStatus as refused:
            return refused.response.status_code
        return 0 if caller.media_messages() else 1000

    webhook = httpx.post(f"{server.url}telephone/incoming", data={"CallSid": "CA" + "1" * 32}, timeout=10)
    socket_answer = asyncio.run(stranger())

    assert webhook.status_code == 404
    assert socket_answer == 403  # the socket is refused before it is accepted: no stream, no call, no spend
    assert "Phone line off: set the secret TWILIO_AUTH_TOKEN" in server.log_text()


def test_the_offer_route_refuses_a_caller_without_the_access_code_before_connecting(server: AppProcess) -> None:
    sdp = asyncio.run(audio_offer_sdp())
    body = {"sdp": sdp, "type": "offer", "webrtc_id": f"call{uuid.uuid4().hex[:12]}"}
    without = httpx.post(f"{server.url}webrtc/offer", json=body, headers=client("203.0.113.95"), timeout=15).json()
    body["webrtc_id"] = f"call{uuid.uuid4().hex[:12]}"
    wrong = httpx.post(f"{server.url}webrtc/offer", json={**body, "code": "guess"}, timeout=15).json()

    for refused in (without, wrong):
        assert refused["status"] == "failed" and refused["meta"]["error"] == "not_admitted", refused
        assert "open the link you were given" in refused["meta"]["message"] and "sdp" not in refused


@pytest.mark.parametrize("route", ["telephone/sms", "telephone/transferred"])
def test_a_flood_of_phone_webhooks_from_one_address_is_turned_away(server: AppProcess, route: str) -> None:
    answers = [
        httpx.post(f"{server.url}{route}", data={"From": "+819012345678"}, headers=client("203.0.113.99"), timeout=10)
        for _ in range(10)
    ]
    assert [answer.status_code for answer in answers] == [404] * 6 + [429] * 4  # no line here; then not even that


def test_the_access_log_never_holds_the_access_code_or_a_feed_token(server: AppProcess) -> None:
    httpx.get(f"{server.url}?code={CODE}", timeout=10).raise_for_status()
    httpx.get(f"{server.url}outputs?stream_id=MZ{'0' * 32}&token=leaked-token", timeout=10)
    time.sleep(0.5)
    log = server.log_text()
    assert CODE not in log and "leaked-token" not in log
