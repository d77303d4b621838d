"""A fake OpenAI service in its own process, and the time stamps it took, fetched over a pipe.

Three fakes: the GPT-Live server (`tests.fake_live`), the Realtime server (`tests.fake_realtime`) and the HTTP
API (`bench.fake_openai`, for the pipeline engine). Either runs in its own process, not a thread of the
benchmark: the fakes decode and scan every caller's audio, and the callers' WebRTC stacks are busy too;
sharing one GIL would delay the fake's answers by the harness's load. Stamps are `time.monotonic()`
(CLOCK_MONOTONIC), which is one clock for all processes on the machine.
"""

from __future__ import annotations

import multiprocessing
import threading
from multiprocessing.connection import Connection
from typing import Any, Protocol

from bench import conversation as talk
from bench.fake_openai import BenchOpenAIServer
from bench.stamps import ConnectionStamps
from tests.fake_live import FakeLiveServer
from tests.fake_realtime import FakeRealtimeServer

KINDS = ("live", "realtime", "pipeline")


class _Fake(Protocol):
    base_url: str

    def connections(self) -> list[int]: ...
    def stamps(self) -> list[ConnectionStamps]: ...
    def problems(self) -> list[str]: ...
    def stop(self) -> None: ...


class _RealtimeFake:
    """The fake Realtime server playing the benchmark's conversation on every connection, and its stamps."""

    def __init__(self, rounds: int) -> None:
        self.server = FakeRealtimeServer(
            talk.fake_script(rounds),
            api_key=talk.KEY,
            pace=talk.PACE,
            vad_threshold_dbfs=talk.VAD_THRESHOLD_DBFS,
            speech_start_ms=talk.SPEECH_START_MS,
            silence_ms=talk.SILENCE_MS,
        ).start()
        self.base_url = self.server.base_url

    def connections(self) -> list[int]:
        return [info.id for info in self.server.connections if info.accepted]

    def stamps(self) -> list[ConnectionStamps]:
        """The first audio delta of each answer and each `speech_started`, per connection (the fake's sent
        events carry the audio, so only these stamps cross the pipe)."""
        first_delta: dict[tuple[int, str], float] = {}
        started: dict[int, list[float]] = {}
        for event in self.server.sent_events():
            conn = event["_conn"]
            if event["type"] == "response.output_audio.delta":
                first_delta.setdefault((conn, event["item_id"]), event["_t"])
            elif event["type"] == "input_audio_buffer.speech_started":
                started.setdefault(conn, []).append(event["_t"])
        conns = sorted({conn for conn, _ in first_delta} | set(started))
        return [
            ConnectionStamps(conn, sorted(t for (c, _), t in first_delta.items() if c == conn), started.get(conn, []))
            for conn in conns
        ]

    def problems(self) -> list[str]:
        return self.server.problems()

    def stop(self) -> None:
        self.server.stop()


class _LiveFake:
    """The fake GPT-Live server playing the conversation on every connection (its output paced by the caller's
    audio, as the real one's), and its stamps."""

    def __init__(self, rounds: int) -> None:
        self.server = FakeLiveServer(
            talk.live_script(rounds), api_key=talk.KEY, vad_threshold_dbfs=talk.VAD_THRESHOLD_DBFS
        ).__enter__()
        self.base_url = self.server.base_url

    def connections(self) -> list[int]:
        return list(range(1, self.server.connection_count() + 1))

    def stamps(self) -> list[ConnectionStamps]:
        return [
            ConnectionStamps(conn, kinds.get("answers", []), kinds.get("heard", []), model_stops=kinds.get("stops", []))
            for conn, kinds in sorted(self.server.stamps().items())
        ]

    def problems(self) -> list[str]:
        return self.server.problems()

    def stop(self) -> None:
        self.server.__exit__(None, None, None)


def _serve(pipe: Connection, kind: str, rounds: int) -> None:
    """The child process: run the fake until told to stop, answering the parent's questions."""
    fakes = {"live": _LiveFake, "realtime": _RealtimeFake}
    fake: _Fake = fakes[kind](rounds) if kind in fakes else BenchOpenAIServer().start()
    pipe.send(fake.base_url)
    try:
        while True:
            request = pipe.recv()
            if request == "connections":
                pipe.send(fake.connections())
            elif request == "stamps":
                pipe.send(fake.stamps())
            elif request == "problems":
                pipe.send(fake.problems())
            else:
                break
    finally:
        fake.stop()


class FakeProcess:
    """One fake (`kind`: "live", "realtime" or "pipeline") for one benchmark level, in a child process (a context
    manager). A connection is one call: a Realtime WebSocket, or a conversation of the HTTP API."""

    def __init__(self, kind: str, rounds: int) -> None:
        if kind not in KINDS:
            raise ValueError(f"no fake {kind!r}; one of {KINDS}")
        context = multiprocessing.get_context("spawn")
        self._pipe, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, kind, rounds), name=f"fake-{kind}", daemon=True)
        self.base_url = ""
        self._lock = threading.Lock()  # one question and its answer at a time on the pipe

    def __enter__(self) -> FakeProcess:
        self.process.start()
        if not self._pipe.poll(60):
            raise RuntimeError("the fake did not start")
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
        """Ids of the connections so far (one per call that reached the fake)."""
        return self._ask("connections")

    def stamps(self) -> list[ConnectionStamps]:
        return self._ask("stamps")

    def problems(self) -> list[str]:
        """Protocol misuse the fake noticed (should stay empty: the app is driven as a real client would be)."""
        return self._ask("problems")
