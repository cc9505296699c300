"""Plumbing shared by every sandbox server: a threaded HTTP/1.1 server on a background thread,
a method+regex router, exact JSON, a request log, fault injection and a sliding-window rate
limiter. Nothing here knows about a particular vendor."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import struct
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import parse_qs, parse_qsl, urlsplit

FaultKind = Literal["status", "delay", "reset", "reset_after"]
Handler = Callable[["Request"], "Response"]
Clock = Callable[[], float]
OnFire = Callable[["Request"], None]


class MalformedBodyError(ValueError):
    """The request body could not be parsed; the vendor server decides how to answer."""


@dataclass(frozen=True, slots=True)
class Request:
    """One parsed HTTP request as the handlers see it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: Mapping[str, str]
    body: bytes
    client_ip: str
    path_params: dict[str, str] = field(default_factory=dict)

    def arg(self, name: str) -> str | None:
        """The last value of query parameter `name` (Rails semantics), or None."""
        values = self.query.get(name)
        return values[-1] if values else None

    def args(self, name: str) -> list[str]:
        """Every value of `name`, also accepting the Rails array form `name[]`."""
        return [*self.query.get(name, []), *self.query.get(f"{name}[]", [])]

    def header(self, name: str) -> str | None:
        """A request header, case-insensitively."""
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)

    def params(self) -> dict[str, Any]:
        """The body as a dict: JSON or form-encoded (Rails nested keys).

        Raises:
            MalformedBodyError: the body claims to be JSON (or looks like it) but is not.
        """
        if not self.body.strip():
            return {}
        content_type = (self.header("Content-Type") or "").lower()
        text = self.body.decode("utf-8", errors="replace")
        if "form-urlencoded" in content_type or (
            "json" not in content_type and not text.lstrip().startswith(("{", "["))
        ):
            return parse_form(text)
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as error:
            raise MalformedBodyError(str(error)) from error
        # Rails puts a non-object JSON body under "_json"; no route here reads it.
        return parsed if isinstance(parsed, dict) else {"_json": parsed}


def parse_form(text: str) -> dict[str, Any]:
    """Decode a form body with Rails-style keys: `a=1`, `a[]=1`, `a[b]=1`, `a[][b]=1`."""
    result: dict[str, Any] = {}
    for key, value in parse_qsl(text, keep_blank_values=True):
        head, _, rest = key.partition("[")
        parts = [head, *re.findall(r"\[([^\]]*)\]", "[" + rest)] if rest else [head]
        _assign(result, parts, value)
    return result


def _assign(target: dict[str, Any], parts: list[str], value: str) -> None:
    name, rest = parts[0], parts[1:]
    if not rest:
        target[name] = value
    elif rest == [""]:
        target.setdefault(name, []).append(value)
    elif rest[0] == "":
        # a[][b]=1: start a new hash when the last one already has this key (Rails' rule)
        items = target.setdefault(name, [])
        if not items or not isinstance(items[-1], dict) or rest[1] in items[-1]:
            items.append({})
        _assign(items[-1], rest[1:], value)
    else:
        _assign(target.setdefault(name, {}), rest, value)


@dataclass(slots=True)
class Response:
    """What a handler answers; Content-Length is always set by the server."""

    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


_JSON_TYPE = "application/json; charset=utf-8"
_SCALARS = {True: json.JSONEncoder(), False: json.JSONEncoder(ensure_ascii=False)}


def json_bytes(payload: Any, *, ensure_ascii: bool = True) -> bytes:
    """`payload` as UTF-8 JSON, spelled as `json.dumps` spells it, but with exact `Decimal`s.

    A `Decimal` becomes a JSON number with every digit, never through float, spelled the way
    the references print amounts (Syncro's numbers, Cloud-iQ's records): trailing zeros dropped,
    one decimal kept (`20.00` → `20.0`, `23.760` → `23.76`, `0.010` → `0.01`).
    `ensure_ascii=False` sends non-ASCII text as UTF-8 instead of `\\u` escapes.

    Raises:
        TypeError: a value or key JSON cannot hold (as `json.dumps` raises it).
        ValueError: a `Decimal` that is NaN or infinite.
    """
    parts: list[str] = []
    _encode(payload, _SCALARS[ensure_ascii], parts)
    return "".join(parts).encode()


def _encode(value: Any, scalar: json.JSONEncoder, parts: list[str]) -> None:
    if isinstance(value, Decimal):
        parts.append(_decimal_number(value))
    elif isinstance(value, dict):
        parts.append("{")
        for index, (key, item) in enumerate(value.items()):
            parts.append(f"{', ' if index else ''}{scalar.encode(_json_key(key))}: ")
            _encode(item, scalar, parts)
        parts.append("}")
    elif isinstance(value, list | tuple):
        parts.append("[")
        for index, item in enumerate(value):
            parts.append(", " if index else "")
            _encode(item, scalar, parts)
        parts.append("]")
    else:
        parts.append(scalar.encode(value))  # str, int, float, bool, None; TypeError otherwise


def _json_key(key: object) -> str:
    """Object keys as `json.dumps` converts them (`1` → `"1"`, `True` → `"true"`)."""
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, bool | int | float):
        return json.dumps(key)
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")


def _decimal_number(number: Decimal) -> str:
    if not number.is_finite():
        raise ValueError(f"{number} cannot be sent as a JSON number")
    text = format(number, "f")  # every digit, whatever the decimal context's precision
    if "." not in text:
        return f"{text}.0"
    text = text.rstrip("0")
    return f"{text}0" if text.endswith(".") else text


def json_response(
    payload: Any,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    *,
    ensure_ascii: bool = True,
) -> Response:
    """A JSON response (see `json_bytes`)."""
    body = json_bytes(payload, ensure_ascii=ensure_ascii)
    return Response(status, body, _JSON_TYPE, dict(headers or {}))


def text_response(text: str, status: int, headers: dict[str, str] | None = None) -> Response:
    """A plain-text response."""
    return Response(status, text.encode(), "text/plain; charset=utf-8", dict(headers or {}))


def empty_response(status: int) -> Response:
    """A response with no body (`Content-Length: 0`)."""
    return Response(status)


def retry_after_headers(seconds: int | None) -> dict[str, str]:
    """The `Retry-After` header of a 429, or no header when `seconds` is None."""
    return {} if seconds is None else {"Retry-After": str(seconds)}


class Router:
    """Maps (method, path) to a handler; patterns are regexes matched against the whole path."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        """Register `handler`; named groups in `pattern` become `request.path_params`."""
        self._routes.append((method.upper(), re.compile(pattern), handler))

    def match(self, method: str, path: str) -> tuple[Handler, dict[str, str]] | None:
        """The first route for this method whose pattern matches the whole path."""
        for route_method, pattern, handler in self._routes:
            found = pattern.fullmatch(path) if route_method == method else None
            if found:
                return handler, found.groupdict()
        return None


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    """One line of the request log; `status` is None when no answer was sent."""

    method: str
    path: str
    query: dict[str, str]
    status: int | None
    client_ip: str
    at: datetime
    fault: FaultKind | None = None


class RequestLog:
    """Thread-safe record of every request the server saw, in arrival order of completion."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[LoggedRequest] = []

    def append(self, entry: LoggedRequest) -> None:
        """Record one request."""
        with self._lock:
            self._entries.append(entry)

    def entries(self, method: str | None = None, path: str | None = None) -> list[LoggedRequest]:
        """Logged requests, optionally only one method and paths matching regex `path`."""
        with self._lock:
            snapshot = list(self._entries)
        return [
            e
            for e in snapshot
            if (method is None or e.method == method.upper())
            and (path is None or re.search(path, e.path))
        ]

    def count(self, method: str | None = None, path: str | None = None) -> int:
        """How many logged requests match (see `entries`)."""
        return len(self.entries(method, path))

    def clear(self) -> None:
        """Forget everything logged so far."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return self.count()

    def __iter__(self) -> Iterator[LoggedRequest]:
        return iter(self.entries())


@dataclass(slots=True)
class Fault:
    """One injected misbehaviour; `remaining` None means every matching request.

    `skip` matching requests pass untouched before it fires; `content` (a regex searched in
    the request body) narrows the match; `on_fire` runs when it fires, at the moment the client
    would learn of it (before processing for `status` and `reset`, after it otherwise).
    """

    kind: FaultKind
    methods: frozenset[str] | None
    path: re.Pattern[str]
    remaining: int | None
    status: int = 500
    body: bytes = b""
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    hits: int = 0
    skip: int = 0
    content: re.Pattern[str] | None = None
    on_fire: OnFire | None = None

    @property
    def method(self) -> str | None:
        """The one method this fault is for, or None when it is for any (or several)."""
        return next(iter(self.methods)) if self.methods and len(self.methods) == 1 else None

    def matches(self, method: str, path: str, body: bytes = b"") -> bool:
        """Whether this fault applies to a request (and is not used up)."""
        return (
            (self.remaining is None or self.remaining > 0)
            and (self.methods is None or method in self.methods)
            and self.path.search(path) is not None
            and (self.content is None
                 or self.content.search(body.decode("utf-8", errors="replace")) is not None)
        )


class Faults:
    """Ordered, thread-safe list of faults; the first match for a request is used and counted."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(
        self,
        *,
        kind: FaultKind,
        method: str | Collection[str] | None = None,
        path: str = "",
        times: int | None = 1,
        status: int = 500,
        body: bytes | str | dict[str, Any] | list[Any] = b"",
        headers: Mapping[str, str] | None = None,
        seconds: float = 0.0,
        skip: int = 0,
        content: str | None = None,
        on_fire: OnFire | None = None,
    ) -> Fault:
        """Inject a fault for requests matching `method` (None = any) and regex `path`.

        Args:
            kind: `status` answers `status`/`body`/`headers` without processing; `delay` sleeps
                `seconds` and then processes; `reset` closes the connection unprocessed;
                `reset_after` processes fully, then closes without answering.
            method: HTTP method, several of them, or None for any.
            path: regex searched in the request path (no query string).
            times: how many requests it hits; None for all of them.
            status: status code for kind `status`.
            body: body for kind `status`; a dict or list is sent as JSON.
            headers: extra headers for kind `status`.
            seconds: sleep for kind `delay`.
            skip: matching requests let through untouched before the fault fires (so
                `skip=2` hits the third), e.g. to stop a client at its n-th write.
            content: regex searched in the request body; only bodies with a match count.
            on_fire: called with the request each time the fault fires (see `Fault`).
        """
        content_type: str | None = None
        if isinstance(body, dict | list):
            body, content_type = json_bytes(body), _JSON_TYPE
        elif isinstance(body, str):
            body, content_type = body.encode(), "text/plain; charset=utf-8"
        methods = [method] if isinstance(method, str) else method
        fault = Fault(
            kind=kind,
            methods=frozenset(m.upper() for m in methods) if methods else None,
            path=re.compile(path),
            remaining=times,
            status=status,
            body=body,
            content_type=content_type if body else None,
            headers=dict(headers or {}),
            seconds=seconds,
            skip=skip,
            content=re.compile(content) if content is not None else None,
            on_fire=on_fire,
        )
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, method: str, path: str, body: bytes = b"") -> Fault | None:
        """Find the first fault matching this request and count it down.

        A fault still skipping lets the request through and counts the skip; later faults
        are not tried for that request.
        """
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path, body):
                    if fault.skip > 0:
                        fault.skip -= 1
                        return None
                    fault.hits += 1
                    if fault.remaining is not None:
                        fault.remaining -= 1
                    return fault
        return None

    def pending(self) -> list[Fault]:
        """Faults that can still fire."""
        with self._lock:
            return [f for f in self._faults if f.remaining is None or f.remaining > 0]

    def clear(self) -> None:
        """Remove every fault."""
        with self._lock:
            self._faults.clear()


class SlidingWindowLimiter:
    """At most `limit` accepted events per key in any `window` seconds; refusals do not count."""

    def __init__(self, limit: int, window: float = 60.0, clock: Clock = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._events: dict[str, deque[float]] = {}

    def allow(self, key: str) -> bool:
        """Record an event for `key` and say yes, or say no without recording it."""
        now = self._clock()
        with self._lock:
            events = self._events.setdefault(key, deque())
            while events and events[0] <= now - self.window:
                events.popleft()
            if len(events) >= self.limit:
                return False
            events.append(now)
            return True


class SandboxServer:
    """A local HTTP server on a background thread; vendors subclass it and add routes.

    Subclasses register handlers on `self.router` and may override `handle` (to wrap every
    request, e.g. for rate limiting) and `malformed_body`.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.router = Router()
        self.faults = Faults()
        self.requests = RequestLog()
        self._httpd: _HttpServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind (port 0 picks a free one), serve on a daemon thread and return at once."""
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._httpd = _HttpServer((self.host, self.port), _RequestHandler, self)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.02},
            name=f"{type(self).__name__}:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, drop open connections and join the threads; safe to call twice."""
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        thread.join()
        httpd.join_handlers(timeout=5.0)
        self._httpd = self._thread = None

    @property
    def url(self) -> str:
        """Base URL such as `http://127.0.0.1:54321` (valid once started)."""
        if self._httpd is None:
            raise RuntimeError("the sandbox server is not running; call start() first")
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        return f"http://{host}:{self.port}"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- request handling ------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        """Dispatch through the router; unknown routes answer 404 with an empty body."""
        found = self.router.match(request.method, request.path)
        if found is None:
            return empty_response(404)
        handler, path_params = found
        try:
            return handler(replace(request, path_params=path_params))
        except MalformedBodyError:
            return self.malformed_body(request)

    def malformed_body(self, request: Request) -> Response:
        """The answer to an unparseable body; vendors override it with their own shape."""
        return text_response("Malformed request body", 400)

    def wait(self, seconds: float) -> None:
        """Sleep for a `delay` fault, waking early when the server stops."""
        self._stopping.wait(seconds)


class _HttpServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that remembers its open connections so `stop()` can close them."""

    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], handler: type[_RequestHandler], sandbox: SandboxServer
    ) -> None:
        self.sandbox = sandbox
        self._open_lock = threading.Lock()
        self._open: dict[socket.socket, threading.Thread | None] = {}
        super().__init__(address, handler)

    def track(self, conn: socket.socket) -> None:
        with self._open_lock:
            self._open[conn] = threading.current_thread()

    def untrack(self, conn: socket.socket) -> None:
        with self._open_lock:
            self._open.pop(conn, None)

    def close_connections(self) -> None:
        with self._open_lock:
            conns = list(self._open)
        for conn in conns:
            with contextlib.suppress(OSError):  # already closed by the peer
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet when a client hung up first (timeouts, resets); report real bugs."""
        if not isinstance(sys.exception(), ConnectionError):
            super().handle_error(request, client_address)

    def join_handlers(self, timeout: float) -> None:
        with self._open_lock:
            threads = [t for t in self._open.values() if t is not None]
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))


class _RequestHandler(BaseHTTPRequestHandler):
    """Turns raw HTTP into `Request`, applies faults, logs, and writes the `Response`."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes
    server: _HttpServer

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def finish(self) -> None:
        self.server.untrack(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  stdlib signature
        """Quiet: no access log on stderr."""

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET  # noqa: N815

    def _serve(self) -> None:
        sandbox = self.server.sandbox
        request = self._parse()
        fault = sandbox.faults.take(request.method, request.path, request.body)
        kind = fault.kind if fault else None
        if fault is not None and fault.on_fire is not None and kind in ("reset", "status"):
            fault.on_fire(request)
        if kind == "reset":
            self._log(request, None, fault)
            self._abort()
            return
        if fault is not None and kind == "status":
            response = Response(fault.status, fault.body, fault.content_type, dict(fault.headers))
        else:
            if fault is not None and kind == "delay":
                sandbox.wait(fault.seconds)
            response = self._dispatch(sandbox, request)
            if fault is not None and fault.on_fire is not None:
                fault.on_fire(request)
        # Log before answering so a client that just got its response always finds it logged.
        self._log(request, response.status, fault)
        if kind == "reset_after":
            self._abort()  # the write happened; only the answer is lost
        else:
            self._write(response)

    def _parse(self) -> Request:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        target = urlsplit(self.path)
        return Request(
            method=self.command,
            path=target.path,
            query=parse_qs(target.query, keep_blank_values=True),
            headers=dict(self.headers.items()),
            body=body,
            client_ip=self.client_address[0],
        )

    @staticmethod
    def _dispatch(sandbox: SandboxServer, request: Request) -> Response:
        try:
            return sandbox.handle(request)
        except Exception:  # noqa: BLE001  a handler bug must answer 500, not drop the connection
            traceback.print_exc()
            return text_response("Internal Server Error", 500)

    def _write(self, response: Response) -> None:
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if response.content_type:
            self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def _abort(self) -> None:
        """Close the connection with a TCP reset and no answer."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()

    def _log(self, request: Request, status: int | None, fault: Fault | None) -> None:
        self.server.sandbox.requests.append(
            LoggedRequest(
                method=request.method,
                path=request.path,
                query={k: v[-1] for k, v in request.query.items()},
                status=status,
                client_ip=request.client_ip,
                at=datetime.now(UTC),
                fault=fault.kind if fault else None,
            )
        )
