"""The servers under test, started fresh for each level: our app (with its fake in its own process) or the floor.

Our app is started exactly as deployed, `python app.py --server`, configured only through its environment:
the fake's address as `OPENAI_BASE_URL`, a dummy key the fake accepts, the engine (`VOICE_ENGINE`), a call
limit above the level, unsigned Twilio webhooks, and a throw-away bookings database. Nothing in it knows it
is measured.

Three benchmarks (`BENCHMARKS`), each a list of targets measured one after the other at every level:

- `webrtc`: the Realtime engine over WebRTC (with the fake Realtime server), and the fastrtc floor;
- `live`: the GPT-Live engine over WebRTC (with the fake Live server), and the same floor;
- `pipeline`: the pipeline engine over WebRTC (with the fake HTTP API); its floor is the fakes' own times;
- `phone`: the phone line (Realtime engine), called as Twilio Media Streams, and the floor's phone line.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench import conversation as talk
from bench.fake_process import FakeProcess
from tests.browser import AppProcess

ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Target:
    """A server to benchmark: its script and arguments, the fake it needs (our app: "realtime" or "pipeline",
    which is also its `VOICE_ENGINE`), how it is called ("webrtc" or "phone"), its offer's extra fields."""

    name: str
    bench: str
    script: Path
    args: tuple[str, ...] = ()
    fake: str | None = None
    transport: str = "webrtc"
    offer_fields: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.bench} {self.name}"


_APP, _FLOOR, _OFFER = ROOT / "app.py", ROOT / "bench" / "floor_app.py", {"language": "en", "voice": "marin"}
OURS = Target("ours", "webrtc", _APP, ("--server",), fake="realtime", offer_fields=_OFFER)
FLOOR = Target("floor", "webrtc", _FLOOR)
PIPELINE = Target("ours", "pipeline", _APP, ("--server",), fake="pipeline", offer_fields=_OFFER)
LIVE = Target("ours", "live", _APP, ("--server",), fake="live", offer_fields=_OFFER)
LIVE_FLOOR = Target("floor", "live", _FLOOR)
PHONE = Target("ours", "phone", _APP, ("--server",), fake="realtime", transport="phone")
PHONE_FLOOR = Target("floor", "phone", _FLOOR, transport="phone")
BENCHMARKS: dict[str, list[Target]] = {
    "webrtc": [FLOOR, OURS],
    "live": [LIVE_FLOOR, LIVE],
    "pipeline": [PIPELINE],
    "phone": [PHONE_FLOOR, PHONE],
}


@dataclass
class RunningServer:
    """A started server: where it listens, its process id, its fake (app only), how long its page took."""

    url: str
    pid: int
    page_served_s: float
    fake: FakeProcess | None


def _environment(target: Target, calls: int, db_dir: Path, fake: FakeProcess | None) -> dict[str, str]:
    env = {"MAX_CONCURRENT_CALLS": str(calls + 2)}  # the level's calls, and the warm-up call's slot being freed
    if fake is None:
        return env | {"PYTHONPATH": str(ROOT)}  # the floor imports the shared conversation and the fake's voice
    return env | {
        "OPENAI_API_KEY": talk.KEY,
        "OPENAI_BASE_URL": fake.base_url,
        "RESERVATIONS_DB": str(db_dir / "reservations.db"),
        "VOICE_ENGINE": target.fake or "realtime",
        "TWILIO_AUTH_TOKEN": "",
        "TWILIO_VALIDATE_SIGNATURE": "false",  # unsigned webhooks: a local test
        "PUBLIC_URL": "",
    }


async def _page_served(app: AppProcess, client: httpx.AsyncClient, started: float) -> float:
    """Seconds from starting the process to `GET /` answering 200, polled every 50 ms."""
    while time.monotonic() - started < STARTUP_TIMEOUT_S:
        if not app.running:
            raise RuntimeError(f"{app.app.name} exited before serving:\n{app.log_tail()}")
        with contextlib.suppress(httpx.HTTPError):
            if (await client.get(app.url, timeout=2)).status_code == 200:
                return time.monotonic() - started
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{app.app.name} did not serve its page within {STARTUP_TIMEOUT_S:.0f} s:\n{app.log_tail()}")


@contextlib.asynccontextmanager
async def running(
    target: Target, calls: int, rounds: int, log_dir: Path, client: httpx.AsyncClient
) -> AsyncIterator[RunningServer]:
    """Start `target` for a level of `calls` calls of `rounds` rounds; stop it (and its fake) on exit."""
    with contextlib.ExitStack() as stack:
        fake = stack.enter_context(FakeProcess(target.fake, rounds)) if target.fake else None
        db_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-db-")))
        app = AppProcess(
            target.script,
            log_dir,
            env=_environment(target, calls, db_dir, fake),
            args=target.args,
            cwd=ROOT,
            name=f"{target.bench}-{target.name}-{calls}",
        )
        stack.callback(app.stop)
        started = time.monotonic()
        app.start()
        page_served_s = await _page_served(app, client, started)
        assert app.proc is not None
        yield RunningServer(app.url.rstrip("/"), app.proc.pid, page_served_s, fake)
