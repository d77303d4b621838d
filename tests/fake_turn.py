"""A local stand-in for Hugging Face's TURN credential service (`https://turn.fastrtc.org/credentials`), behind a
local proxy (`tests.proxied_https`). It counts the credential requests it served.

    with FakeTurnService(tmp_path, token) as turn:
        monkeypatch.setenv("HTTPS_PROXY", turn.proxy_url)
        monkeypatch.setenv("SSL_CERT_FILE", str(turn.ca_file))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.proxied_https import ProxiedHttps

HOST = "turn.fastrtc.org"


class FakeTurnService(ProxiedHttps):
    host = HOST

    def __init__(self, folder: Path, token: str) -> None:
        super().__init__(folder)
        self.token = token
        self.requests: list[dict[str, str]] = []  # the credential requests served: path and Authorization

    def answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[str, Any]:
        self.requests.append({"path": path, "authorization": headers.get("authorization", "")})
        if headers.get("authorization") != f"Bearer {self.token}":
            return "401 Unauthorized", {"error": "invalid token"}
        n = len(self.requests)
        return "200 OK", {
            "iceServers": [{"urls": "turn:turn.example:3478", "username": f"user{n}", "credential": f"secret{n}"}]
        }
