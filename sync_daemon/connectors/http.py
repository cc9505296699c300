"""What every remote API needs: a rate limiter, a retry policy, an error classifier, paging.

`HttpApi` wraps one `httpx.Client`. Reads and absolute writes (GET/PUT/DELETE) are retried on
transient failures; a creating POST is retried only when it provably never left the client,
otherwise it raises `AmbiguousWriteError` and the connector settles it by reading the remote.
JSON is decoded with `Decimal` for every number that has a fraction, so money never sees a float.
"""

from __future__ import annotations

import contextvars
import email.utils
import json
import math
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

import httpx
import tenacity

from sync_daemon.errors import (
    AmbiguousWriteError,
    ConfigError,
    InvariantError,
    NotFoundError,
    RejectedError,
    SyncError,
    TransientError,
)
from sync_daemon.logs import get_logger

log = get_logger()

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE"})
# The request never reached the server: safe to send again, even a POST.
NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# The request may have been processed: only idempotent requests may be sent again.
MAYBE_SENT = (httpx.ReadTimeout, httpx.WriteTimeout, httpx.ReadError, httpx.WriteError,
              httpx.RemoteProtocolError)


class RateLimiter:
    """Spaces requests evenly so that no 60-second window holds more than the limit.

    Even spacing (no burst) keeps any sliding window on the server at or under the limit; the
    1 % margin absorbs network jitter between our clock and the server's. Thread-safe: each
    caller reserves the next free slot, so concurrent workers share one budget.
    """

    MARGIN = 0.01

    def __init__(
        self,
        requests_per_minute: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if requests_per_minute <= 0:
            raise ValueError("requests_per_minute must be positive")
        self.requests_per_minute = requests_per_minute
        self.interval = 60.0 / requests_per_minute * (1 + self.MARGIN)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_slot = -math.inf

    def acquire(self) -> float:
        """Wait for the next free slot; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next_slot)
            self._next_slot = slot + self.interval
        wait = slot - now
        if wait > 0:
            self._sleep(wait)
        return wait

    def hold(self, seconds: float) -> None:
        """Push every caller's next slot back, e.g. after the server said 429."""
        with self._lock:
            self._next_slot = max(self._next_slot, self._clock() + seconds)


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a collection: its items and, when the API says, how many pages exist."""

    items: Sequence[Any]
    total_pages: int | None = None


def paginate(fetch: Callable[[int], Page], *, first: int = 1) -> Iterator[Any]:
    """Yield items page by page until an empty page or the last page the API announced.

    A page identical to the one before means the server ignored `page`; stopping there could
    hide data and continuing would loop forever, so it is an `InvariantError`.
    """
    previous: Sequence[Any] | None = None
    page_number = first
    while True:
        page = fetch(page_number)
        if not page.items:
            return
        if previous is not None and list(page.items) == list(previous):
            raise InvariantError(f"page {page_number} repeated page {page_number - 1}")
        yield from page.items
        if page.total_pages is not None and page_number >= page.total_pages:
            return
        previous = page.items
        page_number += 1


_T = TypeVar("_T")
_R = TypeVar("_R")


def overlapped(call: Callable[[_T], _R], items: Iterable[_T], *, workers: int) -> list[_R]:
    """`[call(item) for item in items]`, up to `workers` calls in flight at once.

    For independent requests that share one rate limiter: the limiter spaces them, the
    overlap hides each one's latency, so the budget is used instead of waited away. Results
    keep the items' order; the first failure in that order is raised once the calls in flight
    are done, and calls not yet started are cancelled. Each call runs in a copy of the
    caller's context, so log lines keep the run's `run_id`.
    """
    items = list(items)
    if workers <= 1 or len(items) <= 1:
        return [call(item) for item in items]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="overlap") as pool:
        futures: list[Future[_R]] = [
            pool.submit(contextvars.copy_context().run, call, item) for item in items
        ]
        try:
            return [future.result() for future in futures]
        except BaseException:
            for future in futures:
                future.cancel()
            raise


_tls_lock = threading.Lock()
_tls: list[ssl.SSLContext] = []  # built once per process, by whoever asks first


def tls_context() -> ssl.SSLContext:
    """httpx's default verifying context (certifi, or `SSL_CERT_FILE`/`SSL_CERT_DIR`), built
    once per process: loading the CA bundle takes ~50 ms, and every pass builds a client per
    API (the service builds them afresh for each pass)."""
    with _tls_lock:
        if not _tls:
            _tls.append(httpx.create_ssl_context())
        return _tls[0]


def prepare_tls_context() -> None:
    """Start building the TLS context in the background, so that it is ready by the time the
    first client needs it (OpenSSL reads the CA bundle without holding the GIL)."""
    if not _tls:
        threading.Thread(target=tls_context, name="tls-context", daemon=True).start()


def decode_json(response: httpx.Response) -> Any:
    """Decode a JSON body with `Decimal` for fractional numbers; non-JSON is a transient fault."""
    try:
        return json.loads(response.content, parse_float=Decimal)
    except ValueError:
        # An HTML error page or a truncated body with status 200: proxies do this under load.
        raise TransientError(
            f"{response.request.method} {response.request.url.path}: "
            f"expected JSON, got {_snippet(response)!r}"
        ) from None


def encode_json(value: Any) -> bytes:
    """JSON-encode with `Decimal` written as an exact JSON number (never via float)."""
    return _encode(value).encode()


def _encode(value: Any) -> str:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"cannot send {value} as a JSON number")
        return format(value, "f")
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{json.dumps(str(k))}:{_encode(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_encode(v) for v in value) + "]"
    if isinstance(value, float):
        raise TypeError("floats are not sent: use Decimal for money and quantities")
    return json.dumps(value)


def retry_after_seconds(response: httpx.Response, *, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds (integer or HTTP date form), or None when absent or garbled."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    current = now or datetime.now(UTC)
    return max(0.0, (when - current).total_seconds())


def _snippet(response: httpx.Response, limit: int = 120) -> str:
    text = response.text.strip().replace("\n", " ")
    return text[:limit]


def default_messages(response: httpx.Response) -> list[str]:
    """The reasons a remote gave, from whatever shape it used; the raw text as a last resort."""
    try:
        body = json.loads(response.content, parse_float=Decimal)
    except ValueError:
        text = _snippet(response)
        return [text] if text else []
    return messages_from_body(body)


def messages_from_body(body: Any) -> list[str]:
    """Normalise `errors` / `error` / `message` / `Message` (string, list or dict) to a list."""
    if not isinstance(body, Mapping):
        return [str(body)] if body else []
    for key in ("errors", "error", "message", "Message"):
        if body.get(key):
            return _flatten(body[key])
    return []


def _flatten(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [f"{k} {m}" for k, v in value.items() for m in _flatten(v)]
    if isinstance(value, list | tuple):
        return [m for v in value for m in _flatten(v)]
    return [str(value)]


AuthFailure = Callable[[httpx.Response, str | None], str]


def _default_auth_failure(response: httpx.Response, _permission: str | None) -> str:
    reasons = "; ".join(default_messages(response)) or "no reason given"
    return f"authentication failed ({response.status_code}): {reasons}"


class HttpApi:
    """One remote API: base URL, auth, rate limit, retries and error classification.

    Args:
        name: the system's name in messages and logs (`syncro`, `proofpoint`, ...).
        base_url: the API root, e.g. `https://acme.syncromsp.com/api/v1`.
        auth: an `httpx.Auth` flow; credentials never appear in messages.
        limiter: shared rate limiter, or None when the API has no documented limit.
        transport: an httpx transport; tests pass `httpx.MockTransport`.
        messages: turns an error response into its list of reasons.
        auth_failure: explains a 401/403 for the operator, given the permission needed.
        max_attempts: attempts per request, the first included.
        max_retry_wait: longest `Retry-After` honoured; a longer one fails the request.
        sleep: injectable so tests never wait.
    """

    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        auth: httpx.Auth | None = None,
        headers: Mapping[str, str] | None = None,
        limiter: RateLimiter | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        messages: Callable[[httpx.Response], list[str]] = default_messages,
        auth_failure: AuthFailure = _default_auth_failure,
        max_attempts: int = 6,
        max_retry_wait: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.limiter = limiter
        self._messages = messages
        self._auth_failure = auth_failure
        self._max_attempts = max_attempts
        self._max_retry_wait = max_retry_wait
        self._sleep = sleep
        self._client = httpx.Client(
            base_url=self.base_url + "/",
            auth=auth,
            headers={"Accept": "application/json", **(headers or {})},
            timeout=timeout,
            transport=transport,
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=16),
            verify=tls_context(),
        )
        self.stats = RequestStats()

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def __enter__(self) -> HttpApi:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def get_json(
        self, path: str, *, params: Mapping[str, Any] | None = None, permission: str | None = None
    ) -> Any:
        """GET and decode JSON, with retries."""
        return self.request("GET", path, params=params, permission=permission)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        form: Mapping[str, str] | None = None,
        permission: str | None = None,
        idempotent: bool | None = None,
    ) -> Any:
        """Send one request with rate limiting and retries; return its decoded JSON body.

        An empty 2xx body decodes to None. A body that is not JSON counts as a transient
        fault for idempotent requests and as an ambiguous write otherwise.

        Raises:
            ConfigError: 401/403, naming `permission` when given.
            NotFoundError: 404.
            RejectedError: any other 4xx.
            TransientError: 429/5xx/network trouble after the last attempt.
            AmbiguousWriteError: a non-idempotent request that may have been processed.
        """
        method = method.upper()
        if idempotent is None:
            idempotent = method in IDEMPOTENT_METHODS
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(TransientError),
            wait=self._wait,
            stop=tenacity.stop_after_attempt(self._max_attempts),
            sleep=self._sleep,
            before_sleep=lambda state: self._log_retry(method, path, state),
            reraise=True,
        )
        content = encode_json(json_body) if json_body is not None else None
        headers = {"Content-Type": "application/json"} if content is not None else None
        for attempt in retrying:
            with attempt:
                response = self._send_once(
                    method, path, params=params, content=content, form=form, headers=headers,
                    permission=permission, idempotent=idempotent,
                )
                return self._decode(response, idempotent=idempotent)
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    def _decode(self, response: httpx.Response, *, idempotent: bool) -> Any:
        if not response.content.strip():
            return None
        try:
            return decode_json(response)
        except TransientError as exc:
            if idempotent:
                raise TransientError(f"{self.name}: {exc}") from None
            raise AmbiguousWriteError(f"{self.name}: {exc}; the write may have landed",
                                      finished=True) from None

    def _send_once(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None,
        content: bytes | None,
        form: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
        permission: str | None,
        idempotent: bool,
    ) -> httpx.Response:
        if self.limiter is not None:
            self.limiter.acquire()
        where = f"{self.name}: {method} /{path.lstrip('/')}"
        started = time.perf_counter()
        try:
            response = self._client.request(
                method, path.lstrip("/"), params=params, content=content, data=form,
                headers=headers,
            )
        except NEVER_SENT as exc:
            self.stats.count(method, None)
            raise TransientError(f"{where}: cannot connect ({type(exc).__name__})") from None
        except MAYBE_SENT as exc:
            self.stats.count(method, None)
            if idempotent:
                raise TransientError(f"{where}: {type(exc).__name__}") from None
            raise AmbiguousWriteError(
                f"{where}: no answer ({type(exc).__name__}); the write may have landed"
            ) from None
        self.stats.count(method, response.status_code)
        log.debug("http.request", system=self.name, method=method, path=response.request.url.path,
                  status=response.status_code,
                  elapsed_ms=round((time.perf_counter() - started) * 1000, 1))
        self._classify(response, where=where, permission=permission, idempotent=idempotent)
        return response

    def _classify(
        self, response: httpx.Response, *, where: str, permission: str | None, idempotent: bool
    ) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        if status in (401, 403):
            raise ConfigError(f"{where}: {self._auth_failure(response, permission)}")
        if status == 404:
            raise NotFoundError(f"{where}: not found", status=status)
        if status == 429:
            # Throttling happens before the request is processed, so even a POST may be resent.
            wait = retry_after_seconds(response)
            if self.limiter is not None:
                # Capped: a longer wait fails this request instead of stalling later ones.
                hold = self.limiter.interval if wait is None else min(wait, self._max_retry_wait)
                self.limiter.hold(hold)
            raise TransientError(f"{where}: rate limited (429)", retry_after=wait)
        if status == 408 or status >= 500:
            reasons = "; ".join(self._messages(response))
            message = f"{where}: server error {status}" + (f": {reasons}" if reasons else "")
            if not idempotent:
                # A proxy's 502/504 says nothing of the server behind it, which may still be
                # working on the request; any other status is the server's own answer.
                raise AmbiguousWriteError(message + "; the write may have landed",
                                          finished=status not in (502, 504))
            raise TransientError(message, retry_after=retry_after_seconds(response))
        messages = self._messages(response)
        raise RejectedError(
            f"{where}: rejected ({status}): {'; '.join(messages) or 'no reason given'}",
            status=status, messages=messages,
        )

    def _wait(self, state: tenacity.RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        hint = error.retry_after if isinstance(error, TransientError) else None
        if hint is not None:
            if hint > self._max_retry_wait:
                raise TransientError(
                    f"{self.name}: asked to wait {hint:.0f}s, longer than the "
                    f"{self._max_retry_wait:.0f}s allowed; try again later", retry_after=hint,
                )
            return hint
        backoff: float = tenacity.wait_exponential_jitter(initial=1, max=60)(state)
        return backoff

    def _log_retry(self, method: str, path: str, state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning(
            "http.retry", system=self.name, method=method, path="/" + path.lstrip("/"),
            attempt=state.attempt_number, wait_s=round(state.upcoming_sleep, 2),
            reason=str(error) if isinstance(error, SyncError) else type(error).__name__,
        )


class RequestStats:
    """Counts of requests by method and status, for run summaries and benchmarks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_method: dict[str, int] = {}
        self.by_status: dict[int | None, int] = {}

    def count(self, method: str, status: int | None) -> None:
        """Record one request; `status` is None when no response came back."""
        with self._lock:
            self.by_method[method] = self.by_method.get(method, 0) + 1
            self.by_status[status] = self.by_status.get(status, 0) + 1

    @property
    def reads(self) -> int:
        """GET requests sent."""
        return self.by_method.get("GET", 0)

    @property
    def writes(self) -> int:
        """POST, PUT, PATCH and DELETE requests sent."""
        return sum(n for m, n in self.by_method.items() if m in {"POST", "PUT", "PATCH", "DELETE"})
