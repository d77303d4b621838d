"""Browser end-to-end test infrastructure: a real Chromium talking WebRTC to a real Gradio/fastrtc app.

Pieces, used together by the browser tests:

- `speech_wav` / `silence_wav`: WAV files that Chromium plays as its (fake) microphone. Chromium *loops* the
  file for as long as the capture is open, so a speech file is designed as "lead silence, then
  (utterance, pause) cycles"; energy-based turn detection then hears speech followed by a pause.
- `AppProcess`: runs `python app.py` on a free localhost port, waits until the page is served, logs to a file,
  and terminates it (SIGTERM, then SIGKILL) on exit.
- `launch_chromium`: Debian's headless Chromium (never `playwright install`) with a fake microphone fed from
  a WAV, the microphone permission granted, and background networking off (the sandbox network is closed).
- Page helpers for fastrtc's `WebRTC(modality="audio", mode="send-receive")` component: `start_call`,
  `end_call`, `call_state`, `time_left`; Gradio toasts: `visible_messages`, `toasts`, `dismiss_messages`;
  the bot's playback level: `start_output_meter`, `output_levels`, `output_rms`, `wait_for_output`,
  `wait_for_output_silence`; and `snap` for screenshots.

What the page looks like (fastrtc 0.0.34, gradio 5.50):

- The call button is `button[aria-label='start stream']` in every state; its text comes from `button_labels`
  ("Record" / "Connecting..." / "Stop" by default), so the state is read from the icon's `title` inside it:
  `start recording` (idle), `spinner` (connecting), `stop recording` (in a call). Clicking it in a call hangs
  up. With `full_screen=False` the component first shows a "Click to Access Microphone" button
  (`div[title='grant webcam access'] button`); `start_call` clicks it when present.
- In a call, `button[aria-label='mute audio']` and `button[aria-label='mute mic']` appear. The bot's audio
  plays through the hidden `audio.standard-player` element whose `srcObject` is the remote stream.
- Errors and warnings are Gradio toasts, `[data-testid='toast-body']` with class `error`/`warning`/`info`,
  `.toast-title` ("Error"/"Warning"/"Info") and `.toast-text` (the message). They stay for 10 s. This covers
  `gr.Error`/`gr.Warning`/`gr.Info`, fastrtc's `WebRTCError` (error toast with the exception message; the call
  stays "open" in the UI), `fastrtc.Warning` (warning toast), `CloseStream(msg)` (warning toast with `msg`, and
  the call ends at once), a full server ("Too many concurrent connections. Please try again later!", error)
  and a failed peer connection ("Connection failed!", error).
- `time_limit` shows no number: a `.streaming-bar` element animates over `time_limit` seconds;
  `time_left` reads it. When the server's time limit closes the connection, the page only notices when ICE
  consent fails (~8 s later) and silently returns to idle; a handler that emits `CloseStream` ends at once.

Pitfalls found while building this (see also the smoke test's echo app):

- `WebRTC(full_screen=True)` (the default) collapses the component and floats its call button over whatever
  is laid out below it; Playwright then refuses the click ("... intercepts pointer events"), as a user's click
  would land on the other element. `full_screen=False` keeps the button inside the component.
- `on_additional_outputs(..., queue=False)` is unreliable in gradio 5.50: streaming diffs are cached per
  `id()` of a short-lived generator, ids get reused, a diff reaches the page as a full value, the page throws
  "Cannot use 'in' operator to search for 'file' in undefined", outputs stop and the call button stops
  working. Use the queue (the default) with `concurrency_limit=None`: each call's output stream holds a queue
  slot for the whole call, so with the default limit of 1 a second caller's transcript waits behind the first.
  Inputs passed to it are read once per call (stale afterwards): keep the transcript in the handler.
- After a hang-up the browser closes its peer connection 0.5 s later, and only then does the server free the
  call's slot: calling again at once gets "Too many concurrent connections" (`end_call` waits `settle_s`).
- With no ICE servers, the browser's config is `{}` (no STUN) and connecting on localhost takes ~0.2-0.3 s.
  aiortc on the server defaults to Google's STUN unless `server_rtc_configuration={"iceServers": []}`; here the
  name fails to resolve at once, so it costs nothing, but a DNS that hangs would delay each answer up to 5 s.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import wave
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page, Playwright

CHROMIUM = Path("/usr/bin/chromium")
"""Debian's Chromium; Playwright drives it through `executable_path` (no downloaded browsers)."""

LAPTOP: dict[str, int] = {"width": 1280, "height": 800}
PHONE: dict[str, int] = {"width": 390, "height": 844}

WAV_RATE = 48_000
"""Sample rate of generated WAVs: Chromium captures at 48 kHz, so the fake microphone needs no resampling
(16, 22.05 and 44.1 kHz files work too)."""

CHROMIUM_ARGS: tuple[str, ...] = (
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # No internet here: every other host fails at once, not after a DNS timeout that can stall a page's load.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
    # The bot's <audio> element and the meter's AudioContext may start without a user gesture.
    "--autoplay-policy=no-user-gesture-required",
)

START_BUTTON = "button[aria-label='start stream']"
MIC_ACCESS_BUTTON = "div[title='grant webcam access'] button"


def have_browser_tools() -> bool:
    """True when Chromium, espeak-ng and sox are installed (browser tests skip otherwise)."""
    return CHROMIUM.exists() and shutil.which("espeak-ng") is not None and shutil.which("sox") is not None


# --------------------------------------------------------------------------------------------------------------
# Audio files for the fake microphone
# --------------------------------------------------------------------------------------------------------------


def _read_wav_int16(path: Path) -> tuple[int, np.ndarray]:
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise ValueError(f"{path}: expected 16-bit mono, got {w.getsampwidth() * 8}-bit x{w.getnchannels()}")
        return w.getframerate(), np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)


def _write_wav_int16(path: Path, samples: np.ndarray, rate: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.asarray(samples, dtype=np.int16).tobytes())
    return path


def _speak(text: str, voice: str, speed_wpm: int, rate: int, peak_dbfs: float, workdir: Path) -> np.ndarray:
    """One utterance: espeak-ng → sox (resample to `rate`, mono 16-bit, trim espeak's own silences, normalise)."""
    text_file = workdir / "utterance.txt"
    raw = workdir / "espeak.wav"
    out = workdir / "utterance.wav"
    text_file.write_text(text, encoding="utf-8")  # via a file: no shell quoting, no text parsed as options
    subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed_wpm), "-w", str(raw), "-f", str(text_file)],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            "sox",
            str(raw),
            "-r",
            str(rate),
            "-c",
            "1",
            "-b",
            "16",
            "-e",
            "signed-integer",
            str(out),
            "silence",
            "1",
            "0.02",
            "0.5%",
            "reverse",
            "silence",
            "1",
            "0.02",
            "0.5%",
            "reverse",
            "norm",
            str(peak_dbfs),
        ],
        check=True,
        capture_output=True,
    )
    got_rate, samples = _read_wav_int16(out)
    assert got_rate == rate
    if samples.size == 0:
        raise ValueError(f"espeak-ng produced no audio for {text!r} (voice {voice!r})")
    return samples


def speech_wav(
    text: str | Sequence[str],
    path: Path,
    voice: str = "en",
    pad_silence_s: float = 1.5,
    repeat: int = 1,
    *,
    lead_silence_s: float | None = None,
    tail_silence_s: float | None = None,
    speed_wpm: int = 150,
    rate: int = WAV_RATE,
    peak_dbfs: float = -3.0,
) -> Path:
    """Write a fake-microphone WAV (16-bit mono, `rate` Hz): silence, then "utterance, pause" cycles.

    Layout: `lead_silence_s` (default `pad_silence_s`) of silence, then each utterance of `text` (a string or a
    list of strings, spoken in order) followed by `pad_silence_s` of silence; the whole sequence `repeat` times.
    The final pause is `tail_silence_s` (default `pad_silence_s`). Silence is digital zero, so a server-side RMS
    reads exactly 0 in the pauses.

    Chromium loops the file for as long as the capture runs and starts it from the beginning when the
    capture opens (roughly when the call starts), so the caller says the utterances again after
    `duration(file)` seconds. For "say it once, then listen", use a long `tail_silence_s` (e.g. 60): 48 kHz
    16-bit is ~94 KiB per second.

    `voice` is an espeak-ng voice ("en", "en-us", "ja", "cmn", ...); `speed_wpm` its speaking rate.
    Returns `path`.
    """
    utterances = [text] if isinstance(text, str) else list(text)
    if not utterances or repeat < 1:
        raise ValueError("need at least one utterance and repeat >= 1")
    pad = np.zeros(int(round(pad_silence_s * rate)), dtype=np.int16)
    lead = np.zeros(int(round((pad_silence_s if lead_silence_s is None else lead_silence_s) * rate)), dtype=np.int16)
    tail = np.zeros(int(round((pad_silence_s if tail_silence_s is None else tail_silence_s) * rate)), dtype=np.int16)
    with tempfile.TemporaryDirectory(prefix="speech-wav-") as tmp:
        spoken = [_speak(u, voice, speed_wpm, rate, peak_dbfs, Path(tmp)) for u in utterances]
    parts: list[np.ndarray] = [lead]
    for _ in range(repeat):
        for samples in spoken:
            parts += [samples, pad]
    parts[-1] = tail
    return _write_wav_int16(Path(path), np.concatenate(parts), rate)


def silence_wav(path: Path, seconds: float = 10.0, rate: int = WAV_RATE) -> Path:
    """Write `seconds` of digital silence as a fake-microphone WAV (for a caller who says nothing). Returns `path`."""
    return _write_wav_int16(Path(path), np.zeros(int(round(seconds * rate)), dtype=np.int16), rate)


def wav_duration(path: Path) -> float:
    """Length of a WAV file in seconds (one loop of the fake microphone)."""
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / w.getframerate()


# --------------------------------------------------------------------------------------------------------------
# The app under test, as a subprocess
# --------------------------------------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppStartupError(RuntimeError):
    """The app exited or did not serve its page in time; the message carries the tail of its output."""


class AppProcess:
    """Run a Gradio app (`python app.py`) on a free localhost port for the duration of a `with` block.

    The environment is `os.environ` without `OPENAI_API_KEY` (so a test never spends real money by accident),
    updated with `env` (which may set `OPENAI_API_KEY` back), plus `GRADIO_SERVER_NAME=127.0.0.1`,
    `GRADIO_SERVER_PORT`, `GRADIO_ANALYTICS_ENABLED=False` and `PYTHONUNBUFFERED=1`. Output (stdout and stderr)
    goes to `log_dir/<name>.log`. Entering starts the process and waits until `GET /` answers 200; exiting
    sends SIGTERM to the process group it started, then SIGKILL after `stop_timeout_s`.

        with AppProcess(Path("app.py"), tmp_path) as app:
            page.goto(app.url)
    """

    def __init__(
        self,
        app: Path,
        log_dir: Path,
        env: Mapping[str, str] | None = None,
        *,
        port: int | None = None,
        startup_timeout_s: float = 60.0,
        stop_timeout_s: float = 10.0,
        args: Sequence[str] = (),
        cwd: Path | None = None,
        name: str | None = None,
        python: str = sys.executable,
    ) -> None:
        self.app = Path(app).resolve()
        self.log_dir = Path(log_dir)
        self.port = port or free_port()
        self.startup_timeout_s = startup_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.cwd = Path(cwd) if cwd else self.app.parent
        self.log_path = self.log_dir / f"{name or self.app.stem}-{self.port}.log"
        self.command = [python, str(self.app), *args]
        merged = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
        merged.update(env or {})
        merged.update(
            GRADIO_SERVER_NAME="127.0.0.1",
            GRADIO_SERVER_PORT=str(self.port),
            GRADIO_ANALYTICS_ENABLED="False",
            PYTHONUNBUFFERED="1",
        )
        self.env = merged
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None

    @property
    def url(self) -> str:
        """The page's address, with a trailing slash."""
        return f"http://127.0.0.1:{self.port}/"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> AppProcess:
        """Start the process (without waiting for it to serve)."""
        if self.proc is not None:
            raise RuntimeError("already started")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log_path, "wb")  # closed in stop()
        self.proc = subprocess.Popen(
            self.command,
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() signals only what we started
        )
        return self

    def wait_ready(self, timeout_s: float | None = None) -> None:
        """Poll `GET /` until it answers 200; raise `AppStartupError` (with the log tail) on exit or timeout."""
        deadline = time.monotonic() + (self.startup_timeout_s if timeout_s is None else timeout_s)
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            if not self.running:
                code = self.proc.returncode if self.proc else None
                raise AppStartupError(f"{self.app.name} exited with code {code} before serving\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url, timeout=2) as response:
                    if response.status == 200:
                        return
                    last_error = f"HTTP {response.status}"
            except (urllib.error.URLError, OSError) as error:
                last_error = str(error)
            time.sleep(0.2)
        raise AppStartupError(
            f"{self.app.name} did not serve {self.url} within the timeout ({last_error})\n{self.log_tail()}"
        )

    def stop(self) -> int | None:
        """SIGTERM the process group, SIGKILL it if still alive after `stop_timeout_s`; return the exit code."""
        proc, self.proc = self.proc, None
        code = None
        if proc is not None:
            if proc.poll() is None:
                self._signal(proc, signal.SIGTERM)
                try:
                    proc.wait(self.stop_timeout_s)
                except subprocess.TimeoutExpired:
                    self._signal(proc, signal.SIGKILL)
                    proc.wait(5)
            code = proc.returncode
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return code

    @staticmethod
    def _signal(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        try:
            os.killpg(proc.pid, sig)  # the group we created with start_new_session (pgid == pid)
        except ProcessLookupError:
            pass
        except PermissionError:
            proc.send_signal(sig)

    def log_text(self) -> str:
        """Everything the app printed so far."""
        if self._log_file is not None:
            self._log_file.flush()
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        """The last `lines` lines the app printed."""
        return "\n".join(self.log_text().splitlines()[-lines:])

    def __enter__(self) -> AppProcess:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------------------------
# Chromium
# --------------------------------------------------------------------------------------------------------------


def launch_chromium(
    playwright: Playwright,
    wav: Path,
    user_data_dir: Path,
    viewport: Mapping[str, int] = LAPTOP,
    *,
    mobile: bool = False,
    headless: bool = True,
    extra_args: Sequence[str] = (),
    **context_options: Any,
) -> BrowserContext:
    """Start headless Debian Chromium with `wav` as the microphone; return its (persistent) browser context.

    `user_data_dir` should be a fresh, empty directory (we run as root, hence `--no-sandbox`). The microphone
    permission is granted for every origin. `viewport` is `LAPTOP` (1280x800) or `PHONE` (390x844) or any
    `{"width", "height"}`; `mobile=True` also sets `is_mobile`/`has_touch` and a 3x scale (a phone). Extra
    keyword arguments go to `launch_persistent_context` (e.g. `locale`, `timezone_id`). Closing the context
    closes the browser.
    """
    wav = Path(wav).resolve()
    if not wav.is_file():
        raise FileNotFoundError(wav)
    user_data_dir = Path(user_data_dir)
    user_data_dir.mkdir(parents=True, exist_ok=True)
    options: dict[str, Any] = {
        "executable_path": str(CHROMIUM),
        "headless": headless,
        "args": [*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={wav}", *extra_args],
        "viewport": dict(viewport),
        "permissions": ["microphone"],
    }
    if mobile:
        options.update(is_mobile=True, has_touch=True, device_scale_factor=3)
    options.update(context_options)
    return playwright.chromium.launch_persistent_context(str(user_data_dir), **options)


def record_console(page: Page, path: Path) -> None:
    """Append the page's console messages and uncaught errors to `path` (for debugging a failed test)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(line: str) -> None:
        with path.open("a", encoding="utf-8") as f:
            f.write(line.rstrip() + "\n")

    page.on("console", lambda m: write(f"[{time.strftime('%H:%M:%S')}] {m.type}: {m.text}"))
    page.on("pageerror", lambda e: write(f"[{time.strftime('%H:%M:%S')}] pageerror: {e}\n{e.stack or ''}"))


def open_app(page: Page, url: str, timeout_s: float = 30.0, ready_selector: str | None = None) -> Page:
    """Go to `url` and wait until the WebRTC component's call (or microphone-access) button is shown.

    Waits for DOMContentLoaded only: the page's Google Fonts and cdn requests fail fast in the closed network.
    """
    page.goto(url, wait_until="domcontentloaded", timeout=timeout_s * 1000)
    ready = page.locator(ready_selector or f"{START_BUTTON}, {MIC_ACCESS_BUTTON}").filter(visible=True).first
    ready.wait_for(timeout=timeout_s * 1000)  # the shown engine's (the others' widgets are hidden)
    return page


def snap(page: Page, directory: Path, name: str, full_page: bool = True) -> Path:
    """Save a PNG screenshot as `directory/name.png` (name sanitised); return its path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "screenshot"
    path = directory / f"{safe}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


# --------------------------------------------------------------------------------------------------------------
# The call (fastrtc's WebRTC component)
# --------------------------------------------------------------------------------------------------------------

CallState = Literal["closed", "waiting", "open", "missing", "unknown"]

_CALL_STATE_JS = """
(root) => {
  const scope = root ? document.querySelector(root) : document;
  if (!scope) return "missing";
  if (scope.querySelector("div[title='grant webcam access'] button")) return "closed";
  const button = scope.querySelector("button[aria-label='start stream']");
  if (!button) return "missing";
  if (button.querySelector("[title='spinner']")) return "waiting";
  if (button.querySelector("[title='stop recording']")
      || scope.querySelector("button[aria-label='mute mic'], button[aria-label='unmute mic']")) return "open";
  if (button.querySelector("[title='start recording']")) return "closed";
  return "unknown";
}
"""


def _scoped(root: str, selector: str) -> str:
    return f"{root} {selector}".strip()


def call_state(page: Page, root: str = "") -> CallState:
    """The call's state as the component shows it: "closed" (idle), "waiting" (connecting), "open", or
    "missing" (no component under `root`, a CSS selector such as "#call"; "" means the whole page)."""
    return page.evaluate(_CALL_STATE_JS, root)


class CallError(AssertionError):
    """The call did not start (or end) as expected; the message includes the page's toasts."""


def start_call(page: Page, root: str = "", timeout_s: float = 20.0) -> float:
    """Click the call button (after "Click to Access Microphone", if shown) and wait until the call is open.

    Returns the seconds from the click to "open" (about 0.2 s on localhost). Raises `CallError` as soon as an
    error toast appears (e.g. "Too many concurrent connections. Please try again later!") or on timeout; a
    peer connection that never connects stays "waiting" (the page shows no error), so that ends in the timeout.
    """
    deadline = time.monotonic() + timeout_s
    page.wait_for_selector(
        f"{_scoped(root, START_BUTTON)}, {_scoped(root, MIC_ACCESS_BUTTON)}", timeout=timeout_s * 1000
    )
    access = page.locator(_scoped(root, MIC_ACCESS_BUTTON))
    if access.count():
        access.first.click()
    button = page.locator(_scoped(root, START_BUTTON)).first
    button.wait_for(state="visible", timeout=max(1.0, deadline - time.monotonic()) * 1000)
    if call_state(page, root) == "open":
        raise CallError("a call is already open")
    errors_before = set(visible_messages(page, kinds=("error",)))
    clicked = time.monotonic()
    button.click()
    state: CallState = "unknown"
    while time.monotonic() < deadline:
        state = call_state(page, root)
        if state == "open":
            return time.monotonic() - clicked
        new_errors = [m for m in visible_messages(page, kinds=("error",)) if m not in errors_before]
        if new_errors:
            raise CallError(f"call did not start (state {state}): {new_errors}")
        page.wait_for_timeout(100)
    raise CallError(f"call not open after {timeout_s:.0f} s (state {state}); messages: {visible_messages(page)}")


def end_call(page: Page, root: str = "", timeout_s: float = 10.0, settle_s: float = 1.0) -> None:
    """Hang up (click the call button while open or connecting) and wait until the component is idle.

    The browser closes its peer connection 0.5 s after the click and the server frees the call's slot only
    then, so a new call started at once meets "Too many concurrent connections" (with concurrency_limit=1);
    `settle_s` waits that out. Does nothing if no call is open.
    """
    if call_state(page, root) not in ("open", "waiting"):
        return
    page.locator(_scoped(root, START_BUTTON)).first.click()
    deadline = time.monotonic() + timeout_s
    while call_state(page, root) != "closed":
        if time.monotonic() > deadline:
            raise CallError(f"call still {call_state(page, root)} {timeout_s:.0f} s after hanging up")
        page.wait_for_timeout(100)
    if settle_s > 0:
        page.wait_for_timeout(settle_s * 1000)


def time_left(page: Page, root: str = "") -> float | None:
    """Seconds left of fastrtc's `time_limit`, read from the animated `.streaming-bar` shown during a call;
    None when no call is open or no time limit is set.

    Only trustworthy for the first call after the page loaded or after a hang-up click: when the server ends a
    call (`CloseStream`), the bar stays on screen and keeps running, and the next call does not restart it.
    """
    if call_state(page, root) != "open":
        return None
    return page.evaluate(
        """(root) => {
          const scope = root ? document.querySelector(root) : document;
          const bar = scope && scope.querySelector('.streaming-bar');
          if (!bar) return null;
          const total = parseFloat(getComputedStyle(bar).animationDuration);
          const animation = bar.getAnimations()[0];
          const elapsed = animation && animation.currentTime != null ? animation.currentTime / 1000 : 0;
          return Math.max(0, total - elapsed);
        }""",
        root,
    )


# --------------------------------------------------------------------------------------------------------------
# Toasts: gr.Error / gr.Warning / gr.Info, fastrtc WebRTCError / Warning / CloseStream, connection problems
# --------------------------------------------------------------------------------------------------------------

ToastKind = Literal["error", "warning", "info", "success"]


@dataclass(frozen=True)
class Toast:
    kind: str
    """"error", "warning", "info" or "success" (the toast's CSS class)."""
    title: str
    """"Error", "Warning", "Info" (or the title given to gr.Error/gr.Warning/gr.Info)."""
    text: str
    """The message."""


def toasts(page: Page) -> list[Toast]:
    """The Gradio toasts on the page now, newest first."""
    raw = page.evaluate(
        """() => [...document.querySelectorAll("[data-testid='toast-body']")].map(t => ({
              kind: [...t.classList].find(c => ['error', 'warning', 'info', 'success'].includes(c)) || '',
              title: (t.querySelector('.toast-title') || {}).innerText || '',
              text: (t.querySelector('.toast-text') || {}).innerText || '',
            }))"""
    )
    return [Toast(kind=r["kind"], title=r["title"].strip(), text=r["text"].strip()) for r in raw]


def visible_messages(page: Page, kinds: Sequence[str] = ("error", "warning", "info", "success")) -> list[str]:
    """The toasts on the page as "kind: text" strings (e.g. "error: Connection failed!"), newest first."""
    return [f"{t.kind}: {t.text}" for t in toasts(page) if t.kind in kinds]


def dismiss_messages(page: Page) -> None:
    """Close every toast (they otherwise stay 10 s), e.g. before a step that must not raise a new one."""
    page.evaluate("() => document.querySelectorAll(\"[data-testid='toast-close']\").forEach(b => b.click())")


# --------------------------------------------------------------------------------------------------------------
# The bot's audio as the page plays it
# --------------------------------------------------------------------------------------------------------------

_METER_JS = """
({selector, intervalMs, keep}) => {
  if (window.__meter) { clearInterval(window.__meter.timer); try { window.__meter.ctx.close(); } catch (e) {} }
  window.__levels = [];
  const ctx = new AudioContext();
  const m = { ctx, stream: null, source: null, analyser: null, buf: null, timer: null };
  window.__meter = m;
  const attach = () => {
    let stream = null;
    for (const el of document.querySelectorAll(selector)) {
      const s = el.srcObject;
      if (s && s.getAudioTracks && s.getAudioTracks().some(t => t.readyState === 'live')) { stream = s; break; }
    }
    if (stream === m.stream) return;
    if (m.source) { try { m.source.disconnect(); } catch (e) {} }
    m.stream = stream; m.source = null;
    if (!stream) return;
    m.source = ctx.createMediaStreamSource(stream);
    m.analyser = ctx.createAnalyser();
    m.analyser.fftSize = 2048;
    m.buf = new Float32Array(m.analyser.fftSize);
    m.source.connect(m.analyser);  // not to ctx.destination: the page's own <audio> element plays it
  };
  m.timer = setInterval(() => {
    if (ctx.state === 'suspended') ctx.resume();
    attach();
    let rms = 0;
    if (m.source) {
      m.analyser.getFloatTimeDomainData(m.buf);
      let acc = 0;
      for (let i = 0; i < m.buf.length; i++) acc += m.buf[i] * m.buf[i];
      rms = Math.sqrt(acc / m.buf.length);
    }
    window.__levels.push({ t: performance.now(), rms, live: !!m.source });
    if (window.__levels.length > keep) window.__levels.splice(0, window.__levels.length - keep);
  }, intervalMs);
  return ctx.state;
}
"""


@dataclass(frozen=True)
class Level:
    t_ms: float
    """The page's `performance.now()` when sampled."""
    rms: float
    """RMS of the last 2048 samples (~43 ms) of the bot's audio, 0..1 (0 = silence or no stream)."""
    live: bool
    """Whether a remote audio stream was attached at that moment."""


def start_output_meter(page: Page, selector: str = "audio", interval_ms: int = 50, keep: int = 12_000) -> str:
    """Measure the bot's audio as the page receives it: every `interval_ms` the RMS of the remote stream.

    A WebAudio `AnalyserNode` is attached to the `srcObject` of the first element matching `selector` that
    holds a live audio track (fastrtc's hidden `audio.standard-player`), re-attaching when a new call replaces
    the stream; samples go to `window.__levels` (the last `keep`). Install it after the page loaded, before or
    during a call; a reload removes it. Returns the AudioContext state ("running").
    """
    return page.evaluate(_METER_JS, {"selector": selector, "intervalMs": interval_ms, "keep": keep})


def page_time_ms(page: Page) -> float:
    """The page's `performance.now()`, the clock of `Level.t_ms`."""
    return page.evaluate("() => performance.now()")


def output_levels(page: Page, since_ms: float | None = None) -> list[Level]:
    """The meter's samples (all, or those taken at or after page time `since_ms`)."""
    raw = page.evaluate("(since) => (window.__levels || []).filter(l => since === null || l.t >= since)", since_ms)
    return [Level(t_ms=r["t"], rms=r["rms"], live=r["live"]) for r in raw]


def output_rms(page: Page, window_s: float = 1.0) -> float:
    """The loudest sample of the last `window_s` seconds (0.0 if none): > ~0.01 means the bot is audible."""
    return page.evaluate(
        """(w) => { const ls = window.__levels || []; if (!ls.length) return 0;
                    const from = performance.now() - w * 1000;
                    return Math.max(0, ...ls.filter(l => l.t >= from).map(l => l.rms)); }""",
        window_s,
    )


def wait_for_output(
    page: Page, threshold: float = 0.02, timeout_s: float = 20.0, since_ms: float | None = None
) -> float:
    """Wait until the meter hears the bot (a sample above `threshold`, taken at or after `since_ms`); return
    that sample's page time. Raises Playwright's TimeoutError otherwise."""
    handle = page.wait_for_function(
        """([th, since]) => {
             const l = (window.__levels || []).find(l => l.rms > th && (since === null || l.t >= since));
             return l ? l.t : false; }""",
        arg=[threshold, since_ms],
        timeout=timeout_s * 1000,
        polling=50,
    )
    return float(handle.json_value())


def wait_for_output_silence(
    page: Page, threshold: float = 0.005, hold_s: float = 0.5, timeout_s: float = 10.0
) -> float:
    """Wait until the bot has been quiet (every sample below `threshold`) for `hold_s` seconds; return the page
    time when that quiet began. Use after a barge-in to assert that playback stopped."""
    handle = page.wait_for_function(
        """([th, hold]) => {
             const ls = window.__levels || []; if (!ls.length) return false;
             const now = ls[ls.length - 1].t; let start = null;
             for (let i = ls.length - 1; i >= 0 && ls[i].rms < th; i--) start = ls[i].t;
             return start !== null && now - start >= hold * 1000 ? start : false; }""",
        arg=[threshold, hold_s],
        timeout=timeout_s * 1000,
        polling=50,
    )
    return float(handle.json_value())


@contextlib.contextmanager
def chromium_session(
    playwright: Playwright, wav: Path, workdir: Path, viewport: Mapping[str, int] = LAPTOP, **options: Any
) -> Iterator[Page]:
    """`launch_chromium` with a fresh profile under `workdir` and one page; yields the page, closes the browser.

    Console output goes to `workdir/console.log`.
    """
    workdir = Path(workdir)
    profile = Path(tempfile.mkdtemp(prefix="chromium-profile-", dir=workdir))
    context = launch_chromium(playwright, wav, profile, viewport, **options)
    try:
        page = context.pages[0] if context.pages else context.new_page()
        record_console(page, workdir / "console.log")
        yield page
    finally:
        context.close()
        shutil.rmtree(profile, ignore_errors=True)
