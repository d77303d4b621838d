"""CPU time and resident memory of a process, read from /proc (Linux) from outside; the machine's CPU time; the
harness's loop lag.

The server under test must not know it is measured, so nothing here touches it: `/proc/<pid>/stat` gives
its CPU time (user + system, in clock ticks), `/proc/<pid>/status` its resident set (VmRSS). `/proc/stat`
gives the whole machine's busy time, so that what other processes took during a level shows in the report.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    """Fields of /proc/<pid>/stat after the command name (which may hold spaces and parentheses)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


class ProcessMeter:
    """CPU seconds (all threads) and resident memory of one process (the app starts no child processes)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def cpu_seconds(self) -> float:
        fields = _stat_fields(self.pid)
        return (int(fields[11]) + int(fields[12])) / _TICKS_PER_S  # utime + stime

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0


class MachineMeter:
    """Busy CPU seconds of the whole machine, all cores (user, nice, system, irq, softirq, steal)."""

    def cpu_seconds(self) -> float:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(value) for value in fields[:8])
        return (user + nice + system + irq + softirq + steal) / _TICKS_PER_S


class CpuWindow:
    """Average CPU use of some meters over a stretch of wall time (100 % = one core busy)."""

    def __init__(self, *meters: ProcessMeter | MachineMeter) -> None:
        self.meters = meters
        self.started = time.monotonic()
        self._before = [meter.cpu_seconds() for meter in meters]

    def percent(self) -> list[float]:
        wall = time.monotonic() - self.started
        return [
            100.0 * (meter.cpu_seconds() - before) / wall if wall > 0 else 0.0
            for meter, before in zip(self.meters, self._before, strict=True)
        ]


class PeakRss:
    """Samples a meter's RSS in a background thread (the event loop may be too busy to do it on time)."""

    def __init__(self, meter: ProcessMeter, interval_s: float = 0.25) -> None:
        self.meter = meter
        self.interval_s = interval_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-rss", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.meter.rss_bytes())
            self._stop.wait(self.interval_s)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.meter.rss_bytes())


class LoopLag:
    """How late the running event loop wakes up from a short sleep (a context manager around a phase).

    The callers stamp packets when this process's loop gets to them, so a stall here shows up as late
    audio; this tells a stalled harness apart from a stalled server.
    """

    def __init__(self, interval_s: float = 0.01) -> None:
        self.interval_s = interval_s
        self.lags_s: list[float] = []
        self._task: asyncio.Task | None = None

    async def _watch(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(self.interval_s)
            self.lags_s.append(time.monotonic() - before - self.interval_s)

    async def __aenter__(self) -> LoopLag:
        self._task = asyncio.create_task(self._watch())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
