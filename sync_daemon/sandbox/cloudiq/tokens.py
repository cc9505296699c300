"""Cloud-iQ's tokens (assumed-shapes §3.1): the store of issued access and refresh tokens, and
`POST /connect/token` with its password and refresh-token grants."""

from __future__ import annotations

import base64
import binascii
import secrets
import threading
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from sync_daemon.sandbox.cloudiq.model import ApiClient
from sync_daemon.sandbox.cloudiq.views import respond
from sync_daemon.sandbox.http import Clock, Request, Response, parse_form

if TYPE_CHECKING:
    from sync_daemon.sandbox.cloudiq.state import CloudiqState

DEFAULT_EXPIRES_IN = 3600
# Not documented; IdentityServer's default absolute lifetime for refresh tokens.
DEFAULT_REFRESH_EXPIRES_IN = 30 * 24 * 3600
REQUIRED_SCOPE = "CustomerApi"


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    """What one successful call of the token endpoint hands out."""

    access_token: str
    refresh_token: str
    expires_in: int


@dataclass(frozen=True, slots=True)
class _Grant:
    username: str
    client_id: str
    expires_at: float


class TokenStore:
    """Issued access and refresh tokens, expiring on `clock`; a refresh token works once."""

    def __init__(self, clock: Clock, expires_in: int, refresh_expires_in: int) -> None:
        self.clock = clock
        self.expires_in = expires_in
        self.refresh_expires_in = refresh_expires_in
        self._lock = threading.Lock()
        self._access: dict[str, _Grant] = {}
        self._refresh: dict[str, _Grant] = {}

    def issue(self, username: str, client_id: str) -> IssuedTokens:
        """A new access token and a new refresh token for this user and client."""
        now = self.clock()
        access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        with self._lock:
            self._access[access] = _Grant(username, client_id, now + self.expires_in)
            self._refresh[refresh] = _Grant(username, client_id, now + self.refresh_expires_in)
        return IssuedTokens(access, refresh, self.expires_in)

    def holder(self, access_token: str) -> str | None:
        """The username behind a valid, unexpired access token."""
        with self._lock:
            grant = self._access.get(access_token)
        return grant.username if grant is not None and self.clock() < grant.expires_at else None

    def redeem(self, refresh_token: str, client_id: str) -> str | None:
        """Use up a refresh token issued to `client_id`; the username, or None if not valid."""
        with self._lock:
            grant = self._refresh.get(refresh_token)
            if grant is None or grant.client_id != client_id:
                return None
            del self._refresh[refresh_token]
        return grant.username if self.clock() < grant.expires_at else None

    def expire_all(self, *, refresh: bool = False) -> None:
        """Expire every access token now (and every refresh token with `refresh=True`)."""
        expired = self.clock() - 1
        with self._lock:
            stores = (self._access, self._refresh) if refresh else (self._access,)
            for store in stores:
                for token, grant in store.items():
                    store[token] = replace(grant, expires_at=expired)


# -- the token endpoint ----------------------------------------------------------------------


class _TokenError(Exception):
    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


def _token_body(error: str | None = None, tokens: IssuedTokens | None = None) -> dict[str, Any]:
    """The token shape, which successes and failures share."""
    return {
        "AccessToken": tokens.access_token if tokens else None, "IdentityToken": None,
        "Error": error, "ExpiresIn": tokens.expires_in if tokens else 0,
        "TokenType": "Bearer" if tokens else None,
        "RefreshToken": tokens.refresh_token if tokens else None,
    }  # fmt: skip


class TokenEndpoint:
    """`POST /connect/token`: password and refresh-token grants with HTTP Basic client auth."""

    def __init__(self, state: CloudiqState) -> None:
        self.state = state

    def grant(self, request: Request) -> Response:
        # Tokens must never be cached (RFC 6749 §5.1).
        no_store = {"Cache-Control": "no-store", "Pragma": "no-cache"}
        try:
            client = self._client(request)
            username = self._username(self._form(request), client)
        except _TokenError as failure:
            return respond(_token_body(failure.error), failure.status, no_store)
        tokens = self.state.tokens.issue(username, client.client_id)
        return respond(_token_body(tokens=tokens), 200, no_store)

    def _client(self, request: Request) -> ApiClient:
        scheme, _, encoded = (request.header("Authorization") or "").strip().partition(" ")
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        client_id, colon, secret = decoded.partition(":")
        client = None
        if scheme.lower() == "basic" and colon:
            # RFC 6749 §2.3.1: both halves are form-encoded before base64.
            client = self.state.authenticate_client(unquote(client_id), unquote(secret))
        if client is None:
            raise _TokenError(401, "invalid_client")
        return client

    @staticmethod
    def _form(request: Request) -> dict[str, Any]:
        """The form body; a body of another type carries no parameters."""
        if "form-urlencoded" not in (request.header("Content-Type") or "").lower():
            return {}
        return parse_form(request.body.decode("utf-8", errors="replace"))

    def _username(self, form: dict[str, Any], client: ApiClient) -> str:
        """Whom the grant in `form` is for."""
        match form.get("grant_type"):
            case "password":
                return self._password(form)
            case "refresh_token":
                return self._refresh(form, client)
            case _:
                raise _TokenError(400, "unsupported_grant_type")

    def _password(self, form: dict[str, Any]) -> str:
        if REQUIRED_SCOPE not in str(form.get("scope", "")).split():
            raise _TokenError(400, "invalid_scope")
        user = self.state.authenticate_user(
            str(form.get("username", "")), str(form.get("password", ""))
        )
        if user is None:
            raise _TokenError(400, "invalid_grant")
        return user.username

    def _refresh(self, form: dict[str, Any], client: ApiClient) -> str:
        username = self.state.tokens.redeem(str(form.get("refresh_token", "")), client.client_id)
        if username is None or self.state.find_user(username) is None:
            raise _TokenError(400, "invalid_grant")
        return username
