"""A fake of the Hugging Face Hub's OAuth, spoken at the protocol level (OpenID Connect, authorization code).

On a Space with `hf_oauth: true`, Gradio's "Sign in with Hugging Face" (authlib) reads the provider from
`OPENID_PROVIDER_URL` + `/.well-known/openid-configuration`, sends the browser to the authorization endpoint,
exchanges the code at the token endpoint with the Space's client id and secret, and checks the signed ID token
against the provider's keys. This fake serves exactly those endpoints on localhost, and signs in whoever the
test puts in `user` (the Hub would show its consent screen; the fake consents at once):

    with FakeHubOAuth(client_id="cid", client_secret="secret") as hub:
        hub.user = "alice"
        env = {"OPENID_PROVIDER_URL": hub.base_url, "OAUTH_CLIENT_ID": "cid", ...}

`authorizations` records each authorization request; `token_requests` each code exchange.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import threading
import time
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from joserfc import jwt
from joserfc.jwk import RSAKey

from tests.browser import free_port


class FakeHubOAuth:
    """The Hub's OpenID Connect endpoints on a free localhost port, in a background thread."""

    def __init__(self, client_id: str, client_secret: str) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.port = free_port()
        self.user = "alice"
        self.key = RSAKey.generate_key(2048, parameters={"kid": "fake-hub-key", "use": "sig", "alg": "RS256"})
        self.authorizations: list[dict[str, str]] = []
        self.token_requests: list[dict[str, str]] = []
        self._codes: dict[str, dict[str, Any]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._ready = threading.Event()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ---- the endpoints -----------------------------------------------------------------------------

    async def _configuration(self, _: web.Request) -> web.Response:
        base = self.base_url
        return web.json_response(
            {
                "issuer": base,
                "authorization_endpoint": f"{base}/oauth/authorize",
                "token_endpoint": f"{base}/oauth/token",
                "userinfo_endpoint": f"{base}/oauth/userinfo",
                "jwks_uri": f"{base}/oauth/jwks",
                "response_types_supported": ["code"],
                "scopes_supported": ["openid", "profile"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            }
        )

    async def _authorize(self, request: web.Request) -> web.Response:
        query = dict(request.query)
        self.authorizations.append(query)
        if query.get("client_id") != self.client_id or query.get("response_type") != "code":
            return web.json_response({"error": "invalid_request"}, status=400)
        code = secrets.token_urlsafe(24)
        self._codes[code] = {"user": self.user, "nonce": query.get("nonce"), "redirect_uri": query["redirect_uri"]}
        target = f"{query['redirect_uri']}{'&' if '?' in query['redirect_uri'] else '?'}"
        raise web.HTTPFound(target + urlencode({"code": code, "state": query.get("state", "")}))

    async def _token(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.token_requests.append({key: value for key, value in form.items() if key != "client_secret"})
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            client_id, _, client_secret = base64.b64decode(header[6:]).decode().partition(":")
        if (client_id, client_secret) != (self.client_id, self.client_secret):
            return web.json_response({"error": "invalid_client"}, status=401)
        grant = self._codes.pop(str(form.get("code")), None)
        if grant is None or form.get("redirect_uri") != grant["redirect_uri"]:
            return web.json_response({"error": "invalid_grant"}, status=400)
        now = int(time.time())
        claims = {
            "iss": self.base_url,
            "aud": self.client_id,
            "sub": f"user-{grant['user']}",
            "iat": now,
            "exp": now + 3600,
            "nonce": grant["nonce"],
            **self._profile(grant["user"]),
        }
        id_token = jwt.encode({"alg": "RS256", "kid": "fake-hub-key"}, claims, self.key)
        return web.json_response(
            {
                "access_token": f"hf_oauth_{secrets.token_urlsafe(16)}",
                "token_type": "Bearer",
                "expires_in": 3600,
                "scope": "openid profile",
                "id_token": id_token,
            }
        )

    async def _jwks(self, _: web.Request) -> web.Response:
        return web.json_response({"keys": [self.key.as_dict(private=False)]})

    async def _userinfo(self, _: web.Request) -> web.Response:
        return web.json_response({"sub": f"user-{self.user}", **self._profile(self.user)})

    @staticmethod
    def _profile(user: str) -> dict[str, str]:
        return {
            "name": user.title(),
            "preferred_username": user,
            "profile": f"https://huggingface.co/{user}",
            "picture": f"https://huggingface.co/avatars/{user}.svg",
        }

    # ---- the server --------------------------------------------------------------------------------

    def _serve(self) -> None:
        self._loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self._configuration)
        app.router.add_get("/oauth/authorize", self._authorize)
        app.router.add_post("/oauth/token", self._token)
        app.router.add_get("/oauth/jwks", self._jwks)
        app.router.add_get("/oauth/userinfo", self._userinfo)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()

    def __enter__(self) -> FakeHubOAuth:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the fake Hub did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        loop, runner = self._loop, self._runner
        if loop is not None and runner is not None:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
        self._thread.join(10)
