"""Syncro's REST API under `/api/v1` over a `SyncroState`: token auth and permissions, the
routes of each resource, paging and sorting, and the server with its rate limit."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from sync_daemon.sandbox.http import (
    Clock,
    Handler,
    Request,
    Response,
    SandboxServer,
    SlidingWindowLimiter,
    empty_response,
    json_response,
    retry_after_headers,
    text_response,
)
from sync_daemon.sandbox.syncro.records import (
    Record,
    RecordNotFoundError,
    SyncroValidationError,
    to_bool,
    to_int,
    to_int_list,
)
from sync_daemon.sandbox.syncro.state import SyncroState

T = TypeVar("T")

DEFAULT_TOKEN = "sandbox-syncro-token"  # noqa: S105  a fake token for a local fake server
INVALID_TOKEN_MESSAGE = "Invalid or missing API token."  # noqa: S105  an error message
NOT_AUTHORIZED_MESSAGE = (
    "Not authorized. Please ask account admin to update your group permissions."
)

# Permission strings exactly as the token UI names them (syncro-api.md §1.4).
CUSTOMERS_LIST = "Customers - List/Search"
CUSTOMERS_VIEW = "Customers - View Detail"
CUSTOMERS_CREATE = "Customers - Create"
CUSTOMERS_EDIT = "Customers - Edit"
PRODUCTS_LIST = "Products - List/Search"
PRODUCTS_CREATE = "Products - Create"
PRODUCTS_EDIT = "Products - Edit"
SCHEDULES_LIST = "Recurring Invoices - List"
SCHEDULES_NEW = "Recurring Invoices - New"
SCHEDULES_EDIT = "Recurring Invoices - Edit"
SCHEDULES_DELETE = "Recurring Invoices - Delete"
INVOICES_LIST = "Invoices - List/Search"
INVOICES_VIEW = "Invoices - View Details"
INVOICES_CREATE = "Invoices - Create"
INVOICES_EDIT = "Invoices - Edit"
ALL_PERMISSIONS: frozenset[str] = frozenset(
    {
        CUSTOMERS_LIST, CUSTOMERS_VIEW, CUSTOMERS_CREATE, CUSTOMERS_EDIT, "Customers - Delete",
        PRODUCTS_LIST, PRODUCTS_CREATE, PRODUCTS_EDIT, "Products - Edit Quantities",
        SCHEDULES_LIST, SCHEDULES_NEW, SCHEDULES_EDIT, SCHEDULES_DELETE,
        INVOICES_LIST, INVOICES_VIEW, INVOICES_CREATE, INVOICES_EDIT, "Invoices - Delete",
    }
)  # fmt: skip

Route = tuple[str, str, str | None, Handler]
_ID = r"(?P<id>\d+)"


def _paginate(items: list[T], request: Request, per_page: int) -> tuple[list[T], int, int]:
    """Slice one page (1-based); a page past the end is empty."""
    page = to_int(request.arg("page")) or 1
    page = max(page, 1)
    total_pages = math.ceil(len(items) / per_page)
    return items[(page - 1) * per_page : page * per_page], page, total_pages


def _full_page(key: str, views: list[Record], request: Request, per_page: int) -> Response:
    items, page, total_pages = _paginate(views, request, per_page)
    meta = {
        "total_pages": total_pages, "total_entries": len(views), "per_page": per_page,
        "page": page,
    }  # fmt: skip
    return json_response({key: items, "meta": meta})


def _sorted(records: list[Record], sort: str | None, fields: Iterable[str]) -> list[Record]:
    """Rails-style `sort=field ASC|DESC` over the sortable `fields`; others keep the id order."""
    field, _, direction = (sort or "").strip().partition(" ")
    if field not in fields:
        return records

    def key(record: Record) -> tuple[bool, Any]:
        value = record[field]
        return value is None, value.lower() if isinstance(value, str) else value

    return sorted(records, key=key, reverse=direction.strip().upper() == "DESC")


_CUSTOMER_SORTABLE = (
    "id", "business_name", "firstname", "lastname", "fullname", "email", "phone", "city",
    "state", "zip", "created_at", "updated_at",
)  # fmt: skip
_PRODUCT_SORTABLE = (
    "id", "name", "description", "price_retail", "price_cost", "quantity", "sort_order",
    "upc_code", "product_category",
)  # fmt: skip


def _contains(value: Any, needle: str) -> bool:
    return isinstance(value, str) and needle.lower() in value.lower()


def _saved(key: str, render: Callable[[Record], Record], save: Callable[[], Record], *,
           echo: Mapping[str, Any] | None = None) -> Response:
    """Run a create or update; 422 in the customers/products shape (§5.2), `params` on create."""
    try:
        record = save()
    except SyncroValidationError as error:
        body: Record = {"success": False, "message": error.messages}
        if echo is not None:
            body["params"] = echo
        return json_response(body, 422)
    return json_response({key: render(record)})


class _CustomersApi:
    """`/customers` (syncro-api.md §4.1, assumed-shapes §1.4)."""

    def __init__(self, state: SyncroState) -> None:
        self.state = state
        self.book = state.customers

    def routes(self) -> list[Route]:
        return [
            ("GET", "/customers", CUSTOMERS_LIST, self.list),
            ("GET", f"/customers/{_ID}", CUSTOMERS_VIEW, self.show),
            ("POST", "/customers", CUSTOMERS_CREATE, self.create),
            ("PUT", f"/customers/{_ID}", CUSTOMERS_EDIT, self.update),
        ]

    def list(self, request: Request) -> Response:
        records = [self.book.records[i] for i in sorted(self.book.records)]
        if not to_bool(request.arg("include_disabled")):
            records = [r for r in records if not r["disabled"]]
        for key in ("business_name", "firstname", "lastname"):
            if needle := request.arg(key):
                records = [r for r in records if _contains(r[key], needle)]
        if email := request.arg("email"):
            records = [r for r in records if (r["email"] or "").lower() == email.strip().lower()]
        if ids := to_int_list(request.args("id")):
            records = [r for r in records if r["id"] in ids]
        if query := request.arg("query"):
            searched = ("business_name", "firstname", "lastname", "fullname", "email", "phone")
            records = [r for r in records if any(_contains(r[k], query) for k in searched)]
        records = _sorted(records, request.arg("sort"), _CUSTOMER_SORTABLE)
        views = [self.book.render(r) for r in records]
        return _full_page("customers", views, request, per_page=25)

    def show(self, request: Request) -> Response:
        record = self.book.record(to_int(request.path_params["id"]))
        return json_response({"customer": self.book.render(record, detail=True)})

    def create(self, request: Request) -> Response:
        params = request.params()
        return _saved("customer", self.book.render, lambda: self.book.create(params), echo=params)

    def update(self, request: Request) -> Response:
        record_id = to_int(request.path_params["id"])
        return _saved("customer", self.book.render,
                      lambda: self.book.update(record_id, request.params()))


class _ProductsApi:
    """`/products` (syncro-api.md §4.2, assumed-shapes §1.5); there is no DELETE."""

    def __init__(self, state: SyncroState) -> None:
        self.state = state
        self.book = state.products

    def routes(self) -> list[Route]:
        return [
            ("GET", "/products", PRODUCTS_LIST, self.list),
            ("GET", f"/products/{_ID}", PRODUCTS_LIST, self.show),
            ("POST", "/products", PRODUCTS_CREATE, self.create),
            ("PUT", f"/products/{_ID}", PRODUCTS_EDIT, self.update),
        ]

    def list(self, request: Request) -> Response:
        records = [self.book.records[i] for i in sorted(self.book.records)]

        def skus(record: Record) -> list[str]:
            return [(s["sku"] or "").lower() for s in record["product_skus"]]

        if name := request.arg("name"):
            records = [r for r in records if _contains(r["name"], name)]
        if sku := request.arg("sku"):
            records = [r for r in records if sku.strip().lower() in skus(r)]
        if upc := request.arg("upc_code"):
            records = [r for r in records if r["upc_code"] == upc]
        if (category := to_int(request.arg("category_id"))) is not None:
            records = [r for r in records if category in r["category_ids"]]
        if ids := to_int_list(request.args("id")):
            records = [r for r in records if r["id"] in ids]
        if query := request.arg("query"):
            needle = query.lower()
            records = [
                r
                for r in records
                if any(_contains(r[k], needle) for k in ("name", "description", "upc_code"))
                or any(needle in s for s in skus(r))
            ]
        records = _sorted(records, request.arg("sort"), _PRODUCT_SORTABLE)
        return _full_page("products", [self.book.render(r) for r in records], request, 25)

    def show(self, request: Request) -> Response:
        record = self.book.record(to_int(request.path_params["id"]))
        return json_response({"product": self.book.render(record)})

    def create(self, request: Request) -> Response:
        params = request.params()
        return _saved("product", self.book.render, lambda: self.book.create(params), echo=params)

    def update(self, request: Request) -> Response:
        record_id = to_int(request.path_params["id"])
        return _saved("product", self.book.render,
                      lambda: self.book.update(record_id, request.params()))


class _SchedulesApi:
    """`/schedules` and their line items (syncro-api.md §4.3, §4.4; assumed-shapes §1.6, §1.7)."""

    def __init__(self, state: SyncroState) -> None:
        self.state = state
        self.book = state.schedules
        self.lines = state.lines

    def routes(self) -> list[Route]:
        line = rf"/schedules/{_ID}/line_items/(?P<line_id>\d+)"
        return [
            ("GET", "/schedules", SCHEDULES_LIST, self.list),
            ("GET", f"/schedules/{_ID}", SCHEDULES_LIST, self.show),
            ("POST", "/schedules", SCHEDULES_NEW, self.create),
            ("PUT", f"/schedules/{_ID}", SCHEDULES_EDIT, self.update),
            ("DELETE", f"/schedules/{_ID}", SCHEDULES_DELETE, self.delete),
            ("POST", f"/schedules/{_ID}/line_items", SCHEDULES_EDIT, self.add_line),
            ("POST", f"/schedules/{_ID}/add_line_item", SCHEDULES_EDIT, self.add_line),
            ("PUT", line, SCHEDULES_EDIT, self.update_line),
            ("DELETE", line, SCHEDULES_EDIT, self.delete_line),
            ("POST", f"/schedules/{_ID}/remove_line_item", SCHEDULES_EDIT, self.remove_line),
        ]

    def list(self, request: Request) -> Response:
        customer_id = to_int(request.arg("customer_id"))
        records = [
            self.book.records[i]
            for i in sorted(self.book.records)
            if customer_id is None or self.book.records[i]["customer_id"] == customer_id
        ]
        views = [self.book.render(r) for r in records]  # list items carry no lines (§1.6)
        return _full_page("schedules", views, request, per_page=50)

    def show(self, request: Request) -> Response:
        record = self.book.record(to_int(request.path_params["id"]))
        return json_response({"schedule": self.book.render(record, with_lines=True)})

    def create(self, request: Request) -> Response:
        try:
            record = self.book.create(request.params())
        except SyncroValidationError as error:
            return json_response({"error": error.messages}, 422)
        return json_response({"schedule": self.book.render(record, with_lines=True)})

    def update(self, request: Request) -> Response:
        schedule_id = self._schedule_id(request)
        try:
            record = self.book.update(schedule_id, request.params())
        except SyncroValidationError as error:
            return json_response({"error": error.messages}, 422)
        return json_response({"schedule": self.book.render(record, with_lines=True)})

    def delete(self, request: Request) -> Response:
        self.book.delete(self._schedule_id(request))
        return json_response({"success": True})

    def add_line(self, request: Request) -> Response:
        schedule_id = self._schedule_id(request)
        try:
            line = self.lines.create(schedule_id, request.params())
        except SyncroValidationError as error:
            return json_response({"error": error.messages}, 422)
        return json_response({"schedule_line_item": self.lines.render(line)})

    def update_line(self, request: Request) -> Response:
        schedule_id = self._schedule_id(request)
        line_id = to_int(request.path_params["line_id"]) or 0
        self.lines.record_of(schedule_id, line_id)
        try:
            line = self.lines.update(schedule_id, line_id, request.params())
        except SyncroValidationError as error:
            return json_response({"error": error.messages}, 422)
        return json_response({"schedule_line_item": self.lines.render(line)})

    def delete_line(self, request: Request) -> Response:
        line_id = to_int(request.path_params["line_id"])
        self.lines.delete(self._schedule_id(request), line_id)
        return json_response({"success": True})

    def remove_line(self, request: Request) -> Response:
        """Legacy remove: the id may come under any of three keys (assumed-shapes §1.7)."""
        schedule_id = self._schedule_id(request)
        params = request.params()
        keys = ("schedule_line_item_id", "line_item_id", "id")
        line_id = next((to_int(params[k]) for k in keys if k in params), None)
        self.lines.delete(schedule_id, line_id)
        return json_response({"success": True})

    def _schedule_id(self, request: Request) -> int:
        schedule_id = to_int(request.path_params["id"])
        return int(self.book.record(schedule_id)["id"])


class _InvoicesApi:
    """`/invoices` (syncro-api.md §4.5, assumed-shapes §1.8)."""

    def __init__(self, state: SyncroState) -> None:
        self.state = state
        self.book = state.invoices

    def routes(self) -> list[Route]:
        return [
            ("GET", "/invoices", INVOICES_LIST, self.list),
            ("GET", r"/invoices/(?P<key>[^/]+)", INVOICES_VIEW, self.show),
            ("POST", "/invoices", INVOICES_CREATE, self.create),
            ("POST", f"/invoices/{_ID}/line_items", INVOICES_EDIT, self.add_line),
        ]

    def list(self, request: Request) -> Response:
        # customer_id is not a filter here and is silently ignored (assumed-shapes §1.8).
        records = [self.book.records[i] for i in sorted(self.book.records, reverse=True)]
        if (paid := request.arg("paid")) is not None:
            records = [r for r in records if r["is_paid"] == to_bool(paid)]
        if (unpaid := request.arg("unpaid")) is not None:
            records = [r for r in records if r["is_paid"] != to_bool(unpaid)]
        if (ticket := to_int(request.arg("ticket_id"))) is not None:
            records = [r for r in records if r["ticket_id"] == ticket]
        if since := self._timestamp(request.arg("since_updated_at")):
            records = [r for r in records if r["updated_at"] >= since]
        per_page = min(to_int(request.arg("per_page")) or 25, 25)
        items, page, total_pages = _paginate(records, request, max(per_page, 1))
        meta = {"total_pages": total_pages, "page": page}  # the minimal variant (§3)
        return json_response({"invoices": [self.book.render(r) for r in items], "meta": meta})

    def show(self, request: Request) -> Response:
        record = self.book.find(request.path_params["key"])
        return json_response({"invoice": self.book.render(record, detail=True)})

    def create(self, request: Request) -> Response:
        try:
            record = self.book.create(request.params())
        except SyncroValidationError as error:
            return json_response({"success": False, "message": error.messages}, 422)
        return json_response({"invoice": self.book.render(record, detail=True)})

    def add_line(self, request: Request) -> Response:
        invoice = self.book.record(to_int(request.path_params["id"]))
        try:
            line = self.book.add_line_record(invoice["id"], request.params())
        except SyncroValidationError as error:
            return json_response({"success": False, "message": error.messages}, 422)
        return json_response(
            {
                "invoice": self.book.render(invoice, detail=True),
                "line_item": self.book.render_line(line),
            }
        )

    def _timestamp(self, text: str | None) -> datetime | None:
        try:
            moment = datetime.fromisoformat((text or "").strip())
        except ValueError:
            return None
        return moment if moment.tzinfo else moment.replace(tzinfo=self.state.tz)


# What GET /me reports per area: permissions granting read, write, delete (assumed-shapes §1.9).
_ME_AREAS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "customer": ((CUSTOMERS_LIST, CUSTOMERS_VIEW), (CUSTOMERS_CREATE, CUSTOMERS_EDIT),
                 ("Customers - Delete",)),
    "product": ((PRODUCTS_LIST,), (PRODUCTS_CREATE, PRODUCTS_EDIT), ()),
    "schedule": ((SCHEDULES_LIST,), (SCHEDULES_NEW, SCHEDULES_EDIT), (SCHEDULES_DELETE,)),
    "invoice": ((INVOICES_LIST, INVOICES_VIEW), (INVOICES_CREATE, INVOICES_EDIT),
                ("Invoices - Delete",)),
}  # fmt: skip


class SyncroSandbox(SandboxServer):
    """The Syncro REST API over HTTP on 127.0.0.1; point a client at `api_url`.

    Args:
        state: the account to serve (a fresh empty one by default); shared, not copied.
        tokens: API token → permission strings it holds (None = every permission).
        requests_per_minute: the per-client-IP limit (sliding 60 s window).
        retry_after: seconds to put in `Retry-After` on 429; None sends no header.
        clock: monotonic seconds for the rate limiter; tests inject a fake.
    """

    def __init__(
        self,
        state: SyncroState | None = None,
        *,
        tokens: Mapping[str, frozenset[str] | None] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        requests_per_minute: int = 180,
        retry_after: int | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        super().__init__(host=host, port=port)
        self.state = state if state is not None else SyncroState()
        self.tokens: dict[str, frozenset[str] | None] = dict(
            tokens if tokens is not None else {DEFAULT_TOKEN: None}
        )
        self.retry_after = retry_after
        self.limiter = SlidingWindowLimiter(requests_per_minute, 60.0, clock)
        self._route("GET", "/me", None, self._me)
        apis = (_CustomersApi, _ProductsApi, _SchedulesApi, _InvoicesApi)
        for api in apis:
            for method, path, permission, handler in api(self.state).routes():
                self._route(method, path, permission, handler)

    @property
    def api_url(self) -> str:
        """`url` plus `/api/v1`: what a Syncro client takes as its base URL."""
        return f"{self.url}/api/v1"

    def handle(self, request: Request) -> Response:
        """Rate-limit per client IP (assumed-shapes §1.2), then route."""
        if not self.limiter.allow(request.client_ip):
            return text_response("Retry later", 429, retry_after_headers(self.retry_after))
        return super().handle(request)

    def malformed_body(self, request: Request) -> Response:
        """Syncro's answer to unparseable JSON (assumed-shapes §1.9)."""
        return json_response({"error": "Invalid JSON in request body"}, 400)

    def _route(self, method: str, path: str, permission: str | None, handler: Handler) -> None:
        def guarded(request: Request) -> Response:
            token = _token(request)
            if token is None or token not in self.tokens:
                return json_response({"error": INVALID_TOKEN_MESSAGE}, 401)
            granted = self.tokens[token]
            if permission is not None and granted is not None and permission not in granted:
                return json_response({"error": NOT_AUTHORIZED_MESSAGE}, 401)
            with self.state.lock:
                try:
                    return handler(request)
                except RecordNotFoundError:
                    return empty_response(404)

        self.router.add(method, f"/api/v1{path}", guarded)

    def _me(self, request: Request) -> Response:
        granted = self.tokens[_token(request) or ""]
        holds = ALL_PERMISSIONS if granted is None else granted
        permissions = {
            area: {
                "read": any(p in holds for p in read),
                "write": any(p in holds for p in write),
                "delete": any(p in holds for p in delete),
            }
            for area, (read, write, delete) in _ME_AREAS.items()
        }
        state = self.state
        me = {
            "user_id": state.user_id, "user_email": state.user_email,
            "user_name": state.user_name, "admin": granted is None,
            "subdomain": state.subdomain, "permissions": permissions,
        }  # fmt: skip
        return json_response(me)


def _token(request: Request) -> str | None:
    """Bearer header, bare header or `?api_key=` (syncro-api.md §1.3)."""
    header = (request.header("Authorization") or "").strip()
    if header:
        scheme, _, rest = header.partition(" ")
        return rest.strip() if scheme.lower() == "bearer" and rest.strip() else header
    return request.arg("api_key")
