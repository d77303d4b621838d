"""Where files for download are written (a call's take-away, the console's exports): one folder, kept small.

Each file goes into a sub-folder named by its content, so the same take-away asked for again is the same file and
a repeat writes nothing. Before each write, sub-folders older than `MAX_AGE_S` go, then the oldest until the
folder holds at most `MAX_BYTES`: the disk a Space shares with its SQLite bookings never fills up with them.
Gradio copies what an event returns into its own cache, which `app.py` has Gradio clean too (`CACHE_CLEANING`).
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import threading
import time
from pathlib import Path

MAX_AGE_S = 3600.0
MAX_BYTES = 50 * 1024 * 1024
CACHE_CLEANING = (600, 3600)  # Gradio's `delete_cache`: every 10 minutes, files older than an hour


class Downloads:
    """One folder of download files (see the module docstring)."""

    def __init__(self, root: Path | None = None, *, max_age_s: float = MAX_AGE_S, max_bytes: int = MAX_BYTES) -> None:
        self.root = root or Path(tempfile.mkdtemp(prefix="voicebot-downloads-"))
        self.max_age_s, self.max_bytes = max_age_s, max_bytes
        self._lock = threading.Lock()

    def write(self, name: str, data: bytes) -> str:
        """The path of a file `name` holding `data`."""
        folder = self.root / hashlib.sha256(name.encode() + b"\0" + data).hexdigest()[:24]
        path = folder / name
        with self._lock:
            self._clean()
            if not path.exists():
                folder.mkdir(parents=True, exist_ok=True)
                partial = folder / f".{name}.part"
                partial.write_bytes(data)
                partial.replace(path)
            else:
                folder.touch()  # asked for again: it is recent
        return str(path)

    def size(self) -> int:
        return sum(item.stat().st_size for item in self.root.rglob("*") if item.is_file())

    def _clean(self) -> None:
        folders = []
        for folder in self.root.iterdir():
            age = time.time() - folder.stat().st_mtime
            if age > self.max_age_s:
                shutil.rmtree(folder, ignore_errors=True)
            else:
                size = sum(item.stat().st_size for item in folder.iterdir() if item.is_file())
                folders.append((folder.stat().st_mtime, size, folder))
        total = sum(size for _, size, _ in folders)
        for _, size, folder in sorted(folders):
            if total <= self.max_bytes:
                break
            shutil.rmtree(folder, ignore_errors=True)
            total -= size


DOWNLOADS = Downloads()
