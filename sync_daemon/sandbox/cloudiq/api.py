"""Cloud-iQ's REST API under `/api/v1` over a `CloudiqState`: its errors and query conventions,
bearer auth, the read-only resources, and the server."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from sync_daemon.sandbox.cloudiq.model import CSP_PROGRAM, MICROSOFT, ApiUser, Organization
from sync_daemon.sandbox.cloudiq.state import CloudiqState
from sync_daemon.sandbox.cloudiq.tokens import TokenEndpoint
from sync_daemon.sandbox.cloudiq.views import Views, respond
from sync_daemon.sandbox.http import (
    Clock,
    Handler,
    Request,
    Response,
    SandboxServer,
    SlidingWindowLimiter,
    retry_after_headers,
)

T = TypeVar("T")

# -- errors and query conventions (assumed-shapes §3.2, §3.3) ---------------------------------

_ERROR_CODES = {
    400: "400 BadRequest", 401: "401 Unauthorized", 403: "403 Forbidden", 404: "404 NotFound",
    405: "405 MethodNotAllowed", 429: "429 TooManyRequests",
}  # fmt: skip
_UNAUTHORIZED = "Authorization has been denied for this request."
_INVALID_TOKEN = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
_INTEGER = re.compile(r"[+-]?[0-9]+")
_INT32 = range(-(2**31), 2**31)
_DEFAULT_PAGE_SIZE = 50


class CloudiqApiError(Exception):
    """Ends a request with the API's error body (assumed-shapes §3.2)."""

    def __init__(
        self,
        status: int,
        message: str,
        parameters: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message
        self.parameters = parameters or {}
        self.headers = headers or {}

    def response(self) -> Response:
        """The error as the API sends it."""
        body = {
            "ErrorCode": _ERROR_CODES[self.status], "Message": self.message,
            "Parameters": self.parameters, "ObjectErrors": [],
        }  # fmt: skip
        return respond(body, self.status, self.headers)


def _not_found(what: str, key: object) -> CloudiqApiError:
    return CloudiqApiError(404, f"{what} with id {key} was not found.")


def _bad_value(name: str, value: str) -> CloudiqApiError:
    return CloudiqApiError(400, f"The value '{value}' is not valid for {name}.", {name: value})


def _integer(name: str, text: str) -> int:
    if not _INTEGER.fullmatch(text) or int(text) not in _INT32:
        raise _bad_value(name, text)
    return int(text)


class _Query:
    """The query string with case-insensitive names; an empty value counts as absent."""

    def __init__(self, request: Request) -> None:
        self._values = {name.lower(): values[-1] for name, values in request.query.items()}

    def text(self, name: str) -> str | None:
        """A string parameter."""
        return self._values.get(name.lower()) or None

    def integer(self, name: str) -> int | None:
        """An integer parameter; 400 when it is not one."""
        text = self.text(name)
        return None if text is None else _integer(name, text)

    def filter(self, name: str) -> int | None:
        """An integer filter, where 0 means no filter (the SDK always sends its defaults)."""
        return self.integer(name) or None

    def flag(self, name: str) -> bool | None:
        """A boolean parameter (`true`/`false`, any case)."""
        text = self.text(name)
        if text is None:
            return None
        if text.lower() not in ("true", "false"):
            raise _bad_value(name, text)
        return text.lower() == "true"

    def instant(self, name: str) -> datetime | None:
        """A `YYYY-MM-DD` date (midnight UTC) or ISO 8601 timestamp; no offset means UTC."""
        text = self.text(name)
        if text is None:
            return None
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise _bad_value(name, text) from None
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)

    def page(self) -> tuple[int, int]:
        """`page` (1-based) and `pageSize` (default 50); values below 1 take the defaults."""
        page, size = self.integer("page") or 1, self.integer("pageSize") or _DEFAULT_PAGE_SIZE
        return max(page, 1), size if size > 0 else _DEFAULT_PAGE_SIZE


def _paged(items: Sequence[T], query: _Query, view: Callable[[T], dict[str, Any]]) -> Response:
    """`{"Items": [...], "TotalHits": n}`; a page past the end is empty (assumed-shapes §3.3)."""
    page, size = query.page()
    chosen = items[(page - 1) * size : page * size]
    return respond({"Items": [view(item) for item in chosen], "TotalHits": len(items)})


# -- the resources ----------------------------------------------------------------------------

UserHandler = Callable[[Request, ApiUser], Response]


def _lookup(request: Request, find: Callable[[int], T], what: str) -> T:
    """The object whose id is in the path: 400 if the id is not an integer, 404 if unknown."""
    key = _integer("id", request.path_params["id"])
    try:
        return find(key)
    except KeyError:
        raise _not_found(what, key) from None


class _Resources:
    """The read-only resources a billing client uses, each answering for one API user."""

    def __init__(self, state: CloudiqState) -> None:
        self.state = state
        self.views = Views(state)

    def routes(self) -> list[tuple[str, UserHandler]]:
        one = "/(?P<id>[^/]+)"
        return [
            ("/me", self.me),
            ("/organizations", self.organizations),
            (f"/organizations{one}", self.organization),
            ("/customertenants", self.tenants),
            (f"/customertenants{one}", self.tenant),
            ("/invoiceprofiles", self.invoice_profiles),
            ("/subscriptions", self.subscriptions),
            (f"/subscriptions{one}", self.subscription),
            ("/agreementproducts", self.agreement_products),
            ("/billingstatements", self.statements),
            (f"/billingstatements{one}/billingrecordsfile", self.records_file),
        ]

    def me(self, request: Request, user: ApiUser) -> Response:
        return respond(self.views.user(user))

    def organizations(self, request: Request, user: ApiUser) -> Response:
        visible = [o for o in self.state.organizations() if o.id in user.organization_ids]
        return _paged(visible, _Query(request), self.views.organization)

    def organization(self, request: Request, user: ApiUser) -> Response:
        # An organization the user may not see answers like an unknown one (§3.2).
        def visible(organization_id: int) -> Organization:
            if organization_id not in user.organization_ids:
                raise KeyError(organization_id)
            return next(o for o in self.state.organizations() if o.id == organization_id)

        return respond(self.views.organization(_lookup(request, visible, "Organization")))

    def tenants(self, request: Request, user: ApiUser) -> Response:
        query = _Query(request)
        allowed = self._organizations(query, user)
        search, domain = (query.text("search") or "").lower(), query.text("domain")
        publisher, program = query.filter("publisherId"), query.filter("programId")
        found = [
            t for t in self.state.tenants()
            if t.organization_id in allowed
            and (not search or any(search in (v or "").lower()
                                   for v in (t.name, t.domain, t.reference)))
            and (domain is None or t.domain == domain.lower())
            and publisher in (None, MICROSOFT[0]) and program in (None, CSP_PROGRAM[0])
        ]  # fmt: skip
        return _paged(found, query, self.views.tenant)

    def tenant(self, request: Request, user: ApiUser) -> Response:
        tenant = _lookup(request, self.state.tenant, "CustomerTenant")
        if tenant.organization_id not in user.organization_ids:
            raise _not_found("CustomerTenant", tenant.id)
        return respond(self.views.tenant(tenant))

    def invoice_profiles(self, request: Request, user: ApiUser) -> Response:
        query = _Query(request)
        allowed = self._organizations(query, user)
        found = [p for p in self.state.invoice_profiles() if p.organization_id in allowed]
        return _paged(found, query, self.views.profile)

    def subscriptions(self, request: Request, user: ApiUser) -> Response:
        query = _Query(request)
        allowed = self._organizations(query, user)
        tenant_id, statuses = query.filter("customerTenantId"), query.filter("statuses")
        is_trial, search = query.flag("isTrial"), (query.text("search") or "").lower()
        found = [
            s for s in self.state.subscriptions()
            if self.state.tenant(s.tenant_id).organization_id in allowed
            and tenant_id in (None, s.tenant_id)
            and (statuses is None or s.status & statuses)
            and is_trial in (None, s.is_trial)
            and (not search or search in s.name.lower() or search in s.product.part_number.lower())
        ]  # fmt: skip
        return _paged(found, query, self.views.subscription)

    def subscription(self, request: Request, user: ApiUser) -> Response:
        found = _lookup(request, self.state.subscription, "Subscription")
        if self.state.tenant(found.tenant_id).organization_id not in user.organization_ids:
            raise _not_found("Subscription", found.id)
        return respond(self.views.subscription(found))

    def agreement_products(self, request: Request, user: ApiUser) -> Response:
        query = _Query(request)
        self._organizations(query, user)  # the one price list, but the organization is checked
        search = (query.text("search") or "").lower()
        found = [
            row for row in self.state.agreement_products()
            if not search or search in row.product.name.lower()
            or search in row.product.part_number.lower()
        ]  # fmt: skip
        return _paged(found, query, self.views.agreement_product)

    def statements(self, request: Request, user: ApiUser) -> Response:
        query = _Query(request)
        allowed = self._organizations(query, user)
        profile, provision = query.filter("invoiceProfileId"), query.filter("provisionType")
        start, end = query.instant("from"), query.instant("to")
        found = [
            s for s in self.state.statements()
            if s.organization_id in allowed and profile in (None, s.invoice_profile_id)
            and provision in (None, s.provision_type) and s.overlaps(start, end)
        ]  # fmt: skip
        return _paged(found, query, self.views.statement)

    def records_file(self, request: Request, user: ApiUser) -> Response:
        """The statement's billing records as a base64 file (assumed-shapes §3.7)."""
        statement = _lookup(request, self.state.statement, "BillingStatement")
        if statement.organization_id not in user.organization_ids:
            raise _not_found("BillingStatement", statement.id)
        return respond(self.views.records_file(statement))

    def _organizations(self, query: _Query, user: ApiUser) -> frozenset[int]:
        """The organizations to list: the one asked for (403 if not the user's) or all of his."""
        asked = query.filter("organizationId")
        if asked is None:
            return user.organization_ids
        if asked not in user.organization_ids:
            raise CloudiqApiError(403, f"Access to organization {asked} is denied.")
        return frozenset({asked})


# -- the server -------------------------------------------------------------------------------

_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


class CloudiqSandbox(SandboxServer):
    """The Crayon API over HTTP on 127.0.0.1; point a client at `api_url`.

    Args:
        state: the partner account to serve (a fresh empty one by default); shared, not copied.
        requests_per_minute: a per-client-IP limit answered with 429; None (default) for none,
            as the API documents no limit (vendor-apis §C.3).
        retry_after: seconds to put in `Retry-After` on 429; None sends no header.
        clock: monotonic seconds for the rate limiter; by default the state's clock.
    """

    def __init__(
        self,
        state: CloudiqState | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        requests_per_minute: int | None = None,
        retry_after: int | None = None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(host=host, port=port)
        self.state = state if state is not None else CloudiqState()
        self.retry_after = retry_after
        self.limiter = None
        if requests_per_minute is not None:
            self.limiter = SlidingWindowLimiter(
                requests_per_minute, 60.0, clock or self.state.clock
            )
        self._route("POST", "/connect/token", TokenEndpoint(self.state).grant)
        for path, handler in _Resources(self.state).routes():
            self._route("GET", path, self._authenticated(handler))
        for method in _METHODS:
            self.router.add(method, ".*", self._unknown)

    @property
    def api_url(self) -> str:
        """`url` plus `/api/v1`: what a Crayon API client takes as its base URL."""
        return f"{self.url}/api/v1"

    def handle(self, request: Request) -> Response:
        """Rate-limit per client IP if configured, then route under the state's lock."""
        if self.limiter is not None and not self.limiter.allow(request.client_ip):
            headers = retry_after_headers(self.retry_after)
            return CloudiqApiError(429, "Too many requests.", headers=headers).response()
        with self.state.lock:
            try:
                return super().handle(request)
            except CloudiqApiError as error:
                return error.response()

    def _route(self, method: str, path: str, handler: Handler) -> None:
        """Register `handler`, with or without a trailing slash; other methods answer 405."""
        pattern = f"/api/v1{path}/?"
        self.router.add(method, pattern, handler)

        def not_allowed(request: Request) -> Response:
            raise CloudiqApiError(
                405,
                f"The requested resource does not support http method '{request.method}'.",
                headers={"Allow": method},
            )

        for other in _METHODS:
            if other != method:
                self.router.add(other, pattern, not_allowed)

    def _authenticated(self, handler: UserHandler) -> Handler:
        def guarded(request: Request) -> Response:
            scheme, _, token = (request.header("Authorization") or "").strip().partition(" ")
            username = None
            if scheme.lower() == "bearer":
                username = self.state.tokens.holder(token.strip())
            user = self.state.find_user(username) if username is not None else None
            if user is None:
                raise CloudiqApiError(401, _UNAUTHORIZED, headers=_INVALID_TOKEN)
            return handler(request, user)

        return guarded

    @staticmethod
    def _unknown(request: Request) -> Response:
        raise CloudiqApiError(404, f"No resource at {request.path}.")
