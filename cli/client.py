"""The gateway's REST API as vaporctl uses it: the envelope unwrapped, tokens renewed, failures as CLIError.

A bearer token is renewed through POST /api/v1/auth/refresh when it has
expired or expires within ``RENEW_BEFORE`` seconds, under the configuration's
lock (the refresh token works once), and the new pair is saved at once.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import httpx

from . import config as cfg
from .errors import APIFailure, CLIError, not_logged_in

RENEW_BEFORE = 60  # seconds before its expiry a token is renewed
TIMEOUT = httpx.Timeout(30.0, read=120.0)


def unwrap(response: httpx.Response) -> Any:
    """``data`` of a success envelope; APIFailure with the server's message otherwise."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("status") == "error" and isinstance(body.get("error"), dict):
        error = body["error"]
        raise APIFailure(
            response.status_code,
            str(error.get("code") or "ERROR"),
            str(error.get("message") or f"the server answered {response.status_code}"),
            error.get("details"),
        )
    if response.is_error or not isinstance(body, dict) or "data" not in body:
        reason = response.reason_phrase or "unexpected answer"
        raise CLIError(
            f"the server at {response.request.url.scheme}://{response.request.url.netloc.decode()} answered "
            f"{response.status_code} {reason}, not the Vapor API; check --server"
        )
    return body["data"]


def transport_error(server: str, exc: httpx.HTTPError) -> CLIError:
    """A sentence for a server that cannot be reached."""
    if isinstance(exc, httpx.ConnectError):
        return CLIError(f"cannot connect to {server}: {_reason(exc)}; is the gateway running there? (--server)")
    if isinstance(exc, httpx.TimeoutException):
        return CLIError(f"{server} did not answer in time")
    return CLIError(f"talking to {server} failed: {_reason(exc)}")


def _reason(exc: BaseException) -> str:
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    text = getattr(exc, "strerror", None) or str(exc)
    return text[:1].lower() + text[1:] if text else type(exc).__name__


def token_pair(data: dict[str, Any]) -> cfg.Login:
    """A login or refresh answer as the configuration keeps it."""
    now = int(time.time())
    return cfg.Login(
        username=str(data["user"]["username"]),
        role=str(data["user"].get("role", "viewer")),
        token=str(data["token"]),
        expires_at=int(data.get("expires_at") or now + int(data["expires_in"])),
        refresh_token=str(data["refresh_token"]),
        refresh_expires_at=now + int(data.get("refresh_expires_in") or 0),
    )


def _post_anonymous(server: str, path: str, body: dict[str, Any]) -> Any:
    try:
        with httpx.Client(base_url=server, timeout=TIMEOUT) as http:
            return unwrap(http.post(f"/api/v1{path}", json=body))
    except httpx.HTTPError as exc:
        raise transport_error(server, exc) from None


def log_in(server: str, username: str, password: str) -> cfg.Login:
    """POST /auth/login; the new login is saved as the current one."""
    login = token_pair(_post_anonymous(server, "/auth/login", {"username": username, "password": password}))
    with cfg.locked():
        config = cfg.load()
        config.logins[server] = login
        config.current_server = server
        cfg.save(config)
    return login


def log_out(server: str) -> str | None:
    """Revoke the refresh token of ``server``'s login and forget it; the user it was, or None."""
    with cfg.locked():
        config = cfg.load()
        login = config.logins.pop(server, None)
        if config.current_server == server:
            config.current_server = next(iter(config.logins), None)
        cfg.save(config)
    if login is None:
        return None
    if login.refresh_expires_at > time.time():
        _post_anonymous(server, "/auth/logout", {"refresh_token": login.refresh_token})
    return login.username


def _fresh_login(server: str) -> cfg.Login:
    """The stored login of ``server``, renewed first when its token (nearly) expired."""
    config = cfg.load()
    login = config.logins.get(server)
    if login is None:
        raise not_logged_in(server)
    if login.expires_at - RENEW_BEFORE > time.time():
        return login
    with cfg.locked():
        config = cfg.load()  # another vaporctl may have renewed it meanwhile
        login = config.logins.get(server)
        if login is None:
            raise not_logged_in(server)
        if login.expires_at - RENEW_BEFORE > time.time():
            return login
        if login.refresh_expires_at <= time.time():
            raise not_logged_in(server, "your login has expired")
        try:
            renewed = token_pair(_post_anonymous(server, "/auth/refresh", {"refresh_token": login.refresh_token}))
        except APIFailure as exc:
            if exc.status == 401:
                raise not_logged_in(server, f"your login has expired ({exc.message})") from None
            raise
        config.logins[server] = renewed
        cfg.save(config)
        return renewed


class Client:
    """An authenticated session with one server."""

    def __init__(self, server: str) -> None:
        self.server = server
        self.login = _fresh_login(server)
        self.http = httpx.Client(
            base_url=f"{server}/api/v1", timeout=TIMEOUT, headers={"Authorization": f"Bearer {self.login.token}"}
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    @property
    def token(self) -> str:
        """The bearer token (renewed when needed), for the WebSockets' auth message."""
        if self.login.expires_at - RENEW_BEFORE <= time.time():
            self.login = _fresh_login(self.server)
            self.http.headers["Authorization"] = f"Bearer {self.login.token}"
        return self.login.token

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """``data`` of the answer to ``method path``; CLIError with the server's message on failure."""
        _ = self.token  # renew first when the token is about to expire
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise transport_error(self.server, exc) from None
        try:
            return unwrap(response)
        except APIFailure as exc:
            if exc.status == 401:
                raise not_logged_in(self.server, f"the server refused your login ({exc.message})") from None
            raise

    def get(self, path: str, **params: Any) -> Any:
        """GET ``path`` with the query ``params`` (None values left out)."""
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: dict[str, Any] | None = None, **params: Any) -> Any:
        """POST a JSON ``body`` to ``path``."""
        query = {k: v for k, v in params.items() if v is not None}
        return self.request("POST", path, json=body if body is not None else {}, params=query)

    def put_stream(self, path: str, chunks: Iterable[bytes], length: int, **params: Any) -> Any:
        """PUT a body of ``length`` bytes from ``chunks`` (never held whole), with a long wait for the answer."""
        query = {k: v for k, v in params.items() if v is not None}
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(length)}
        return self.request(
            "PUT", path, content=chunks, headers=headers, params=query, timeout=httpx.Timeout(30.0, read=600.0)
        )

    def ws_url(self, path: str) -> str:
        """The WebSocket URL of ``path`` on this server."""
        scheme = "wss" if self.server.startswith("https://") else "ws"
        return f"{scheme}://{self.server.split('://', 1)[1]}{path}"
