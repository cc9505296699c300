"""vcrpy set-up for the connector tests: cassettes pinned from the reference, never recorded.

How the cassettes were written: by hand, from `shared/reference/syncro-api.md`,
`shared/reference/vendor-apis.md` §A (Proofpoint) and §C (Cloud-iQ) and
`shared/reference/assumed-shapes.md` §1-§3 (where assumed-shapes speaks, it fixes the shape), not
recorded from our sandbox. The point is that a client is never tested only against our own
emulation of the vendor. Each cassette opens with a YAML comment naming the reference sections
it follows and the scenario it plays (a Cloud-iQ records file is base64, §3.7: the comment also
lists the records it decodes to);
field lists are the reference's full lists plus a few extra fields the reference does not name,
because the client must ignore unknown fields. Bodies are pretty-printed for review (the client
does not depend on whitespace); ids, money types and timestamps follow the reference (ISO 8601
with milliseconds and the account's UTC offset).

Playback only: `record_mode="none"` makes any request missing from a cassette an error, so a
test never reaches the network. If a cassette is ever re-recorded against a live tenant, the
filters below replace the token (header, `api_key` query parameter, body) with a placeholder and
drop cookies before anything is written; the cassettes hold only `Bearer <SYNCRO_API_TOKEN>`.
Proofpoint's login travels in `X-User` / `X-Password` (vendor-apis.md §A.2): both headers, and
their values wherever else they appear, become `<PROOFPOINT_USER>` / `<PROOFPOINT_PASSWORD>`.
Cloud-iQ (vendor-apis.md §C.3, assumed-shapes.md §3) sends `Authorization: Basic <client>` to its
token endpoint and `Bearer <token>` elsewhere: they become `Basic <CLOUDIQ_CLIENT>` and
`Bearer <CLOUDIQ_ACCESS_TOKEN>`; the form fields `username`, `password` and `refresh_token` and the
token JSON's `AccessToken`, `RefreshToken`, `IdentityToken` (and the token `/me` echoes) become
placeholders of their own (`TokenType` is not a secret and stays).

Requests match on method, scheme, host, path and query, plus the body: JSON bodies compare as
parsed JSON with types kept apart (`5` is not `"5"`, `true` is not `1`, `5.50` equals `5.5`), form
bodies as their fields in any order.
"""

from __future__ import annotations

import json
import os
import re
import ssl
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest
import vcr
from vcr.request import Request
from vcr.serializers import yamlserializer

from sync_daemon.connectors.http import encode_json

CASSETTE_DIR = Path(__file__).parent / "cassettes"
TOKEN_PLACEHOLDER = "<SYNCRO_API_TOKEN>"  # what cassettes hold instead of a token
AUTH_PLACEHOLDER = f"Bearer {TOKEN_PLACEHOLDER}"
# Where a live token would come from when re-recording; its value is scrubbed wherever it shows.
TOKEN_ENVIRONMENT = ("SYNCRO_API_TOKEN", "SYNC_DAEMON_SYNCRO__API_TOKEN")
PROOFPOINT_USER_PLACEHOLDER = "<PROOFPOINT_USER>"
PROOFPOINT_PASSWORD_PLACEHOLDER = "<PROOFPOINT_PASSWORD>"
# Where a live Proofpoint login would come from when re-recording.
PROOFPOINT_USER_ENVIRONMENT = ("PROOFPOINT_USER", "SYNC_DAEMON_PROOFPOINT__USERNAME")
PROOFPOINT_PASSWORD_ENVIRONMENT = ("PROOFPOINT_PASSWORD", "SYNC_DAEMON_PROOFPOINT__PASSWORD")
CLOUDIQ_HOSTS = frozenset({"api.crayon.com"})
CLOUDIQ_CLIENT_PLACEHOLDER = "<CLOUDIQ_CLIENT>"  # base64 of client id:secret in Basic auth
CLOUDIQ_CLIENT_ID_PLACEHOLDER = "<CLOUDIQ_CLIENT_ID>"
CLOUDIQ_CLIENT_SECRET_PLACEHOLDER = "<CLOUDIQ_CLIENT_SECRET>"
CLOUDIQ_USER_PLACEHOLDER = "<CLOUDIQ_USER>"
CLOUDIQ_PASSWORD_PLACEHOLDER = "<CLOUDIQ_PASSWORD>"
CLOUDIQ_ACCESS_TOKEN_PLACEHOLDER = "<CLOUDIQ_ACCESS_TOKEN>"
CLOUDIQ_REFRESH_TOKEN_PLACEHOLDER = "<CLOUDIQ_REFRESH_TOKEN>"
CLOUDIQ_IDENTITY_TOKEN_PLACEHOLDER = "<CLOUDIQ_IDENTITY_TOKEN>"
CLOUDIQ_BASIC_PLACEHOLDER = f"Basic {CLOUDIQ_CLIENT_PLACEHOLDER}"
CLOUDIQ_BEARER_PLACEHOLDER = f"Bearer {CLOUDIQ_ACCESS_TOKEN_PLACEHOLDER}"
# Where a live Cloud-iQ login would come from when re-recording.
CLOUDIQ_ENVIRONMENT = (
    (("CLOUDIQ_CLIENT_ID", "SYNC_DAEMON_CLOUDIQ__CLIENT_ID"), CLOUDIQ_CLIENT_ID_PLACEHOLDER),
    (("CLOUDIQ_CLIENT_SECRET", "SYNC_DAEMON_CLOUDIQ__CLIENT_SECRET"),
     CLOUDIQ_CLIENT_SECRET_PLACEHOLDER),
    (("CLOUDIQ_USER", "SYNC_DAEMON_CLOUDIQ__USERNAME"), CLOUDIQ_USER_PLACEHOLDER),
    (("CLOUDIQ_PASSWORD", "SYNC_DAEMON_CLOUDIQ__PASSWORD"), CLOUDIQ_PASSWORD_PLACEHOLDER),
)
# Every secret's environment variables and the placeholder that replaces its value.
SECRET_ENVIRONMENT = (
    (TOKEN_ENVIRONMENT, TOKEN_PLACEHOLDER),
    (PROOFPOINT_USER_ENVIRONMENT, PROOFPOINT_USER_PLACEHOLDER),
    (PROOFPOINT_PASSWORD_ENVIRONMENT, PROOFPOINT_PASSWORD_PLACEHOLDER),
    *CLOUDIQ_ENVIRONMENT,
)


def authorization_placeholder(key: str, value: str, request: Request) -> str:
    """What a cassette holds instead of an `Authorization` value.

    Cloud-iQ's token endpoint takes the client in `Basic` and its API a `Bearer` token; every
    other host is Syncro's bearer token.
    """
    if request.host in CLOUDIQ_HOSTS:
        scheme = value.split(" ", 1)[0].lower()
        return CLOUDIQ_BASIC_PLACEHOLDER if scheme == "basic" else CLOUDIQ_BEARER_PLACEHOLDER
    return AUTH_PLACEHOLDER


# Request headers that carry a credential, and what cassettes hold instead (a string, or a
# function of the header's name, value and request, as vcrpy's `filter_headers` accepts).
SECRET_HEADERS = (
    ("authorization", authorization_placeholder),
    ("x-user", PROOFPOINT_USER_PLACEHOLDER),
    ("x-password", PROOFPOINT_PASSWORD_PLACEHOLDER),
)
# JSON keys whose values are secrets whatever they look like.
SECRET_KEY = re.compile(r"token|password|secret|api_key", re.IGNORECASE)
# Secret JSON keys with a placeholder of their own, spelled exactly (Cloud-iQ's PascalCase token
# JSON and the token its `GET /me` echoes), and keys that look secret but are not.
SECRET_KEY_PLACEHOLDERS = {
    "AccessToken": CLOUDIQ_ACCESS_TOKEN_PLACEHOLDER,
    "RefreshToken": CLOUDIQ_REFRESH_TOKEN_PLACEHOLDER,
    "IdentityToken": CLOUDIQ_IDENTITY_TOKEN_PLACEHOLDER,
    "Token": CLOUDIQ_ACCESS_TOKEN_PLACEHOLDER,
}
NOT_SECRET_KEYS = frozenset({"TokenType"})
# Form fields (Cloud-iQ's token requests) whose values are secrets.
SECRET_FORM_FIELDS = {
    "username": CLOUDIQ_USER_PLACEHOLDER,
    "password": CLOUDIQ_PASSWORD_PLACEHOLDER,
    "refresh_token": CLOUDIQ_REFRESH_TOKEN_PLACEHOLDER,
    "client_id": CLOUDIQ_CLIENT_ID_PLACEHOLDER,
    "client_secret": CLOUDIQ_CLIENT_SECRET_PLACEHOLDER,
}
FORM = "application/x-www-form-urlencoded"
DROPPED_RESPONSE_HEADERS = frozenset({"set-cookie"})


def _known_secrets() -> list[tuple[str, str]]:
    """(value, placeholder) of every secret set in the environment, longest value first."""
    found = [(value, placeholder) for names, placeholder in SECRET_ENVIRONMENT
             for name in names if (value := os.environ.get(name))]
    # A password may contain the user name (or the reverse): replace the longer one first.
    return sorted(found, key=lambda item: len(item[0]), reverse=True)


def _scrub_text(text: str) -> str:
    for secret, placeholder in _known_secrets():
        text = text.replace(secret, placeholder)
    return text


def _json_placeholder(key: str) -> str | None:
    """The placeholder for a JSON value under `key`, None when it is not a secret."""
    if key in NOT_SECRET_KEYS:
        return None
    if key in SECRET_KEY_PLACEHOLDERS:
        return SECRET_KEY_PLACEHOLDERS[key]
    return TOKEN_PLACEHOLDER if SECRET_KEY.search(key) else None


def _scrub_json(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: placeholder if isinstance(v, str) and (placeholder := _json_placeholder(k))
                else _scrub_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub_json(v) for v in value]
    return value


def _is_form(headers: Mapping[str, Any]) -> bool:
    value = headers.get("Content-Type") or ""
    return str(value[0] if isinstance(value, list) else value).startswith(FORM)


def _scrub_form(text: str) -> str:
    """A form body with its secret fields replaced; placeholders are written unescaped."""
    fields = [(k, SECRET_FORM_FIELDS.get(k, v)) for k, v in parse_qsl(text, keep_blank_values=True)]
    return urlencode(fields, safe="<>")


def _scrub_body(body: bytes | str | None, *, form: bool = False) -> bytes | str | None:
    if not body:
        return body
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    if form:
        text = _scrub_form(text)
    try:
        parsed = json.loads(text, parse_float=Decimal)
    except ValueError:
        pass
    else:
        scrubbed = _scrub_json(parsed)
        if scrubbed != parsed:  # re-encode only when a secret-keyed value was replaced
            text = encode_json(scrubbed).decode()
    text = _scrub_text(text)
    return text.encode() if isinstance(body, bytes) else text


def scrub_request(request: Request) -> Request:
    """Remove credentials from a request before vcrpy matches or records it.

    vcrpy hands over a copy, after `filter_headers`/`filter_query_parameters` ran; this also
    catches a secret in a URL or body and the bare `Authorization: <token>` form.
    """
    request.uri = _scrub_text(request.uri)
    request.body = _scrub_body(request.body, form=_is_form(request.headers))
    for header, placeholder in SECRET_HEADERS:
        if header in request.headers:  # vcrpy's headers are case-insensitive
            request.headers[header] = (
                placeholder(key=header, value=request.headers[header], request=request)
                if callable(placeholder) else placeholder)
    return request


def scrub_response(response: dict[str, Any]) -> dict[str, Any]:
    """Drop cookies and any token from a response before vcrpy records it."""
    response["headers"] = {
        name: [_scrub_text(v) for v in values]
        for name, values in response.get("headers", {}).items()
        if name.lower() not in DROPPED_RESPONSE_HEADERS
    }
    body = response.get("body", {})
    if "string" in body:
        body["string"] = _scrub_body(body["string"])
    return response


def _typed(value: Any) -> Any:
    """A JSON value with its type attached, so that `true` never equals `1`."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | Decimal):
        return ("number", Decimal(value))
    if isinstance(value, Mapping):
        return ("object", tuple(sorted(((k, _typed(v)) for k, v in value.items()),
                                       key=lambda item: item[0])))
    if isinstance(value, list):
        return ("array", tuple(_typed(v) for v in value))
    return (type(value).__name__, value)


def _parsed_body(request: Request) -> Any:
    body = request.body
    if body is None or body in (b"", ""):
        return None
    if _is_form(request.headers):
        text = body.decode() if isinstance(body, bytes) else body
        return ("form", tuple(sorted(parse_qsl(text, keep_blank_values=True))))
    try:
        return _typed(json.loads(body, parse_float=Decimal))
    except ValueError:
        return ("raw", body)


def json_body(r1: Request, r2: Request) -> None:
    """vcrpy matcher: the bodies are the same JSON value (types included) or the same form."""
    first, second = _parsed_body(r1), _parsed_body(r2)
    if first != second:
        raise AssertionError(f"bodies differ: {r1.body!r} != {r2.body!r}")


def make_vcr() -> vcr.VCR:
    """The one vcrpy configuration of the connector tests."""
    recorder = vcr.VCR(
        cassette_library_dir=str(CASSETTE_DIR),
        record_mode="none",
        match_on=("method", "scheme", "host", "path", "query", "json_body"),
        filter_headers=list(SECRET_HEADERS),
        filter_query_parameters=[("api_key", TOKEN_PLACEHOLDER)],
        before_record_request=scrub_request,
        before_record_response=scrub_response,
        decode_compressed_response=True,
    )
    recorder.register_matcher("json_body", json_body)
    return recorder


@pytest.fixture
def syncro_vcr() -> vcr.VCR:
    """vcrpy in playback-only mode over `cassettes/`."""
    return make_vcr()


@pytest.fixture
def proofpoint_vcr() -> vcr.VCR:
    """vcrpy in playback-only mode over `cassettes/`, for the Proofpoint cassettes."""
    return make_vcr()


@pytest.fixture
def cloudiq_vcr() -> vcr.VCR:
    """vcrpy in playback-only mode over `cassettes/`, for the Cloud-iQ cassettes."""
    return make_vcr()


class FakeClock:
    """Monotonic time that moves only when someone sleeps; records every sleep."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class RecordingTransport(httpx.HTTPTransport):
    """httpx's real transport, which vcrpy patches, keeping every request the client sent."""

    # Loading the CA bundle takes tens of milliseconds; no connection is ever made anyway.
    _ssl_context = ssl.create_default_context()

    def __init__(self) -> None:
        super().__init__(verify=self._ssl_context)
        self.sent: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.sent.append(request)
        return super().handle_request(request)


Interaction = tuple[dict[str, Any], dict[str, Any]]


def read_hand_written(path: Path, *, cites: tuple[str, ...]) -> list[Interaction]:
    """A cassette's (request, response) pairs, after the checks every cassette must pass:
    the hand-written header citing one of `cites`, vcrpy's format, and header values as lists
    of strings (vcrpy's httpx stub needs them so)."""
    text = path.read_text(encoding="utf-8")
    header = text.split("\ninteractions:", 1)[0]
    assert header.startswith("# Hand-written from the reference documents")
    assert "Sources:" in header
    assert any(source in header for source in cites), f"{path.name} cites none of {cites}"
    data = yamlserializer.deserialize(text)
    assert data["version"] == 1
    assert data["interactions"]
    pairs = [(i["request"], i["response"]) for i in data["interactions"]]
    for _, response in pairs:
        assert all(isinstance(v, list) and all(isinstance(s, str) for s in v)
                   for v in response["headers"].values())
    return pairs
