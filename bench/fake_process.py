"""The fake Realtime server in its own process, and the time stamps it took, fetched over a pipe.

Its own process, not a thread of the benchmark: the fake decodes and VAD-scans every caller's audio, and
the callers' WebRTC stacks are busy too; sharing one GIL would delay the fake's answers by the harness's
load. Stamps are `time.monotonic()` (CLOCK_MONOTONIC), which is one clock for all processes on the machine.
"""

from __future__ import annotations

import multiprocessing
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from bench import conversation as talk
from tests.fake_realtime import FakeRealtimeServer


@dataclass(frozen=True)
class ConnectionStamps:
    """What the fake did on one connection (one call of the app): when it sent the first audio delta of each
    answer, and when it told the app the caller started speaking (`input_audio_buffer.speech_started`)."""

    conn: int
    answer_starts: list[float]
    speech_started: list[float]


def _stamps(server: FakeRealtimeServer) -> list[ConnectionStamps]:
    """Summarise the fake's records (its sent events carry the audio, so only the stamps cross the pipe)."""
    first_delta: dict[tuple[int, str], float] = {}
    started: dict[int, list[float]] = {}
    for event in server.sent_events():
        conn = event["_conn"]
        if event["type"] == "response.output_audio.delta":
            first_delta.setdefault((conn, event["item_id"]), event["_t"])
        elif event["type"] == "input_audio_buffer.speech_started":
            started.setdefault(conn, []).append(event["_t"])
    conns = sorted({conn for conn, _ in first_delta} | set(started))
    return [
        ConnectionStamps(
            conn,
            sorted(t for (c, _), t in first_delta.items() if c == conn),
            started.get(conn, []),
        )
        for conn in conns
    ]


def _serve(pipe: Connection, rounds: int) -> None:
    """The child process: run the fake until told to stop, answering the parent's questions."""
    server = FakeRealtimeServer(
        talk.fake_script(rounds),
        api_key=talk.KEY,
        pace=talk.PACE,
        vad_threshold_dbfs=talk.VAD_THRESHOLD_DBFS,
        speech_start_ms=talk.SPEECH_START_MS,
        silence_ms=talk.SILENCE_MS,
    ).start()
    pipe.send(server.base_url)
    try:
        while True:
            request = pipe.recv()
            if request == "connections":
                pipe.send([info.id for info in server.connections if info.accepted])
            elif request == "stamps":
                pipe.send(_stamps(server))
            elif request == "problems":
                pipe.send(server.problems())
            else:
                break
    finally:
        server.stop()


class FakeProcess:
    """The fake Realtime server for one benchmark level, in a child process (a context manager)."""

    def __init__(self, rounds: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipe, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, rounds), name="fake-realtime", daemon=True)
        self.base_url = ""
        self._lock = threading.Lock()  # one question and its answer at a time on the pipe

    def __enter__(self) -> FakeProcess:
        self.process.start()
        if not self._pipe.poll(60):
            raise RuntimeError("the fake Realtime server did not start")
        self.base_url = self._pipe.recv()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.is_alive():
            self._pipe.send("stop")
            self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)

    @property
    def pid(self) -> int:
        return self.process.pid or 0

    def _ask(self, request: str) -> Any:
        with self._lock:
            self._pipe.send(request)
            return self._pipe.recv()

    def connections(self) -> list[int]:
        """Ids of the accepted connections so far (one per call that reached the fake)."""
        return self._ask("connections")

    def stamps(self) -> list[ConnectionStamps]:
        return self._ask("stamps")

    def problems(self) -> list[str]:
        """Protocol misuse the fake noticed (should stay empty: the app is driven as a real client would be)."""
        return self._ask("problems")
