"""Syncro REST API client: customers, products, recurring invoices (schedules) and their lines.

Follows `shared/reference/syncro-api.md` and `assumed-shapes.md` §1: bearer token, `page` +
`meta.total_pages` paging (tolerant of a missing `meta`), singular/plural wrappers, schedule
lines under `lines` with money in integer cents and quantity as a decimal string, product prices
as JSON numbers, and 401 for both a bad token and a missing permission.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Generator, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from sync_daemon.connectors.http import (
    HttpApi,
    Page,
    RateLimiter,
    default_messages,
    overlapped,
    paginate,
)
from sync_daemon.errors import AmbiguousWriteError, InvariantError, NotFoundError
from sync_daemon.logs import get_logger

log = get_logger()

CENT = Decimal("0.01")
# Requests in flight at once by default: enough to hide a request's latency behind the
# limiter's spacing (Syncro answers in ~0.2-0.5 s; 180/min spaces requests 0.34 s apart).
CONCURRENCY = 4
BAD_TOKEN = "Invalid or missing API token."  # noqa: S105  the message Syncro answers, not a secret


class Permission:
    """Syncro's permission names, exactly as the token settings page shows them (§1.4)."""

    CUSTOMERS_LIST = "Customers - List/Search"
    CUSTOMERS_VIEW = "Customers - View Detail"
    PRODUCTS_LIST = "Products - List/Search"
    PRODUCTS_CREATE = "Products - Create"
    PRODUCTS_EDIT = "Products - Edit"
    SCHEDULES_LIST = "Recurring Invoices - List"
    SCHEDULES_EDIT = "Recurring Invoices - Edit"


# ---------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class SyncroUser:
    """The owner of the API token (`GET /me`)."""

    user_id: int
    user_email: str
    user_name: str
    subdomain: str


@dataclass(frozen=True, slots=True)
class Customer:
    """A Syncro customer, as the daemon needs it for mapping."""

    id: int
    business_name: str | None
    fullname: str | None
    email: str | None
    disabled: bool

    @property
    def display_name(self) -> str:
        """Business name, else the person's name, else the id."""
        return self.business_name or self.fullname or f"customer {self.id}"


@dataclass(frozen=True, slots=True)
class Product:
    """A Syncro product; prices in currency units; `taxable` is None when Syncro sent null."""

    id: int
    name: str
    description: str
    price_cost: Decimal
    price_retail: Decimal
    taxable: bool | None
    disabled: bool
    maintain_stock: bool


@dataclass(frozen=True, slots=True)
class ScheduleLine:
    """A line of a recurring invoice; money converted from Syncro's cents.

    A null `quantity`, `retail_cents` or `cost_cents` reads as 0 and is named in `nulls`, so
    the planner can refuse to reason about a line of its own whose count it cannot read.
    """

    id: int
    schedule_id: int
    product_id: int | None
    name: str | None
    description: str | None
    quantity: Decimal
    retail: Decimal
    cost: Decimal
    taxable: bool
    one_time_charge: bool
    position: int | None
    nulls: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Schedule:
    """A recurring invoice; `lines` is empty when it came from a list (lists carry none)."""

    id: int
    customer_id: int
    name: str
    frequency: str | None
    paused: bool
    next_run: date | None
    lines: tuple[ScheduleLine, ...] = ()


@dataclass(frozen=True, slots=True)
class ProductDraft:
    """What the daemon sends to create a product."""

    name: str
    description: str
    price_cost: Decimal
    price_retail: Decimal
    taxable: bool
    disabled: bool = False


@dataclass(frozen=True, slots=True)
class LineDraft:
    """What the daemon sends to add a line to a recurring invoice."""

    product_id: int
    name: str
    quantity: Decimal
    retail: Decimal
    cost: Decimal
    taxable: bool
    description: str | None = None
    one_time_charge: bool = False


# ------------------------------------------------------- payload parsing


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


_P = TypeVar("_P", bound=_Payload)


class _UserPayload(_Payload):
    user_id: int
    user_email: str = ""
    user_name: str = ""
    subdomain: str = ""


class _CustomerPayload(_Payload):
    id: int
    business_name: str | None = None
    fullname: str | None = None
    email: str | None = None
    disabled: bool = False

    @field_validator("disabled", mode="before")
    @classmethod
    def _null_is_false(cls, value: Any) -> Any:
        return False if value is None else value


class _ProductPayload(_Payload):
    id: int
    name: str
    description: str | None = None
    price_cost: Decimal = Decimal(0)
    price_retail: Decimal = Decimal(0)
    taxable: bool | None = True
    disabled: bool = False
    maintain_stock: bool = False

    @field_validator("price_cost", "price_retail", mode="before")
    @classmethod
    def _null_is_zero(cls, value: Any) -> Any:
        return Decimal(0) if value is None else value

    @field_validator("disabled", "maintain_stock", mode="before")
    @classmethod
    def _null_is_false(cls, value: Any) -> Any:
        # Never sent by the daemon except maintain_stock, which Syncro resets when omitted.
        return False if value is None else value


# Line fields whose null reads as 0 (what Syncro stores for a line created without them, §1.7).
_DEFAULTED_LINE_FIELDS = ("quantity", "retail_cents", "cost_cents")


class _LinePayload(_Payload):
    id: int
    schedule_id: int | None = None
    product_id: int | None = None
    name: str | None = None
    description: str | None = None
    quantity: Decimal = Decimal(0)
    retail_cents: int = 0
    cost_cents: int = 0
    taxable: bool = False
    one_time_charge: bool = False
    position: int | None = None
    nulls: frozenset[str] = frozenset()  # filled from the payload, never read from it

    @model_validator(mode="before")
    @classmethod
    def _note_nulls(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        return {**data, "nulls": frozenset(key for key in _DEFAULTED_LINE_FIELDS
                                           if key in data and data[key] is None)}

    @field_validator("retail_cents", "cost_cents", "quantity", mode="before")
    @classmethod
    def _null_is_zero(cls, value: Any) -> Any:
        return 0 if value is None else value

    @field_validator("taxable", "one_time_charge", mode="before")
    @classmethod
    def _null_is_false(cls, value: Any) -> Any:
        return False if value is None else value


class _SchedulePayload(_Payload):
    id: int
    customer_id: int
    name: str | None = None
    frequency: str | None = None
    paused: bool | None = False
    next_run: str | None = None
    lines: list[_LinePayload] | None = None  # None: not sent (lists) or null (see get_schedule)


def _resend_or_raise(error: AmbiguousWriteError) -> None:
    """After a create that did not show up when read back: resend only if the server said it
    was done with the request (a 500 or 503). With no answer (a timeout, a reset, a proxy's
    502/504) the request may still be on its way in, and a resend could land beside it; the
    next pass finds whatever landed by then (products by name, lines by product, charges by
    their write-ahead intent) instead."""
    if not error.finished:
        raise AmbiguousWriteError(f"{error}; not found when read back, so not sent again: "
                                  "the next sync settles it") from None


def _parse(model: type[_P], data: Any, what: str) -> _P:
    """Validate one record; a value the daemon cannot use stops the pass, naming the record
    (by its id, and the line's id for a line of a schedule) and the field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        loc = list(first["loc"])
        record, field = _record_of(data, what, loc)
        problem = (f"{field} is null" if first.get("input", ...) is None
                   else f"{field}: {first['msg']}" if field else first["msg"])
        raise InvariantError(f"syncro: unexpected {what} payload: {record}: {problem}") from None


def _record_of(data: Any, what: str, loc: list[int | str]) -> tuple[str, str]:
    """(the record named by its id, the field) for a validation error at `loc` in `data`."""
    label = f"{what} {_id_of(data)}"
    if len(loc) >= 2 and loc[0] == "lines" and isinstance(loc[1], int):
        lines = data.get("lines") if isinstance(data, Mapping) else None
        line = lines[loc[1]] if isinstance(lines, list) and loc[1] < len(lines) else None
        label += f", line {_id_of(line)}"
        loc = loc[2:]
    return label, ".".join(str(part) for part in loc)


def _id_of(data: Any) -> str:
    found = data.get("id") if isinstance(data, Mapping) else None
    return str(found) if found is not None else "(no id)"


def _unwrap(body: Any, key: str, what: str) -> Any:
    if not isinstance(body, Mapping) or key not in body:
        raise InvariantError(f"syncro: {what} response has no {key!r} wrapper")
    return body[key]


def _date(value: str | None) -> date | None:
    # Older API versions rendered dates as midnight timestamps (syncro-api.md §6).
    if not value:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def _to_customer(p: _CustomerPayload) -> Customer:
    return Customer(id=p.id, business_name=p.business_name or None, fullname=p.fullname or None,
                    email=p.email or None, disabled=p.disabled)


def _to_product(p: _ProductPayload) -> Product:
    return Product(id=p.id, name=p.name, description=p.description or "",
                   price_cost=p.price_cost, price_retail=p.price_retail, taxable=p.taxable,
                   disabled=p.disabled, maintain_stock=p.maintain_stock)


def _to_line(p: _LinePayload, schedule_id: int) -> ScheduleLine:
    return ScheduleLine(
        id=p.id, schedule_id=p.schedule_id or schedule_id, product_id=p.product_id, name=p.name,
        description=p.description, quantity=p.quantity, retail=from_cents(p.retail_cents),
        cost=from_cents(p.cost_cents), taxable=p.taxable, one_time_charge=p.one_time_charge,
        position=p.position, nulls=p.nulls,
    )


def _to_schedule(p: _SchedulePayload) -> Schedule:
    return Schedule(
        id=p.id, customer_id=p.customer_id, name=p.name or "", frequency=p.frequency,
        paused=bool(p.paused), next_run=_date(p.next_run),
        lines=tuple(_to_line(line, p.id) for line in p.lines or ()),
    )


def to_cents(amount: Decimal) -> int:
    """Currency units to integer cents; a sub-cent amount is a planning bug, not a rounding."""
    cents = amount * 100
    if cents != cents.to_integral_value():
        raise InvariantError(f"amount {amount} has fractions of a cent")
    return int(cents)


def from_cents(cents: int) -> Decimal:
    """Integer cents to currency units with two decimals."""
    return (Decimal(cents) / 100).quantize(CENT)


# ----------------------------------------------------------------- client


class BearerToken(httpx.Auth):
    """`Authorization: Bearer <token>`; the token stays out of URLs and logs (§1.3)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request


def _auth_failure(response: httpx.Response, permission: str | None) -> str:
    # 422 bodies differ per resource (syncro-api.md §5.2); 404 bodies are usually empty.
    reasons = default_messages(response)
    if reasons == [BAD_TOKEN] or not reasons:
        return "bad API token (Syncro answered 401: invalid, expired or missing token)"
    if permission:
        return f"the API token lacks the permission '{permission}' ({'; '.join(reasons)})"
    return f"not authorized: {'; '.join(reasons)}"


class SyncroClient:
    """Typed access to the Syncro endpoints the daemon uses.

    Every list is read whole through its pages; creates recover from ambiguous failures by
    reading the remote before sending again, so a retry never duplicates a product or a line.
    """

    def __init__(self, api: HttpApi, *, concurrency: int = CONCURRENCY) -> None:
        self.api = api
        self.concurrency = concurrency

    @classmethod
    def connect(
        cls,
        base_url: str,
        api_token: str,
        *,
        requests_per_minute: int = 180,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        max_attempts: int = 6,
        limiter: RateLimiter | None = None,
        concurrency: int = CONCURRENCY,
    ) -> SyncroClient:
        """Build a client with a retry policy and its own rate limiter, unless it is given
        one to share with other clients (several passes at once stay under one limit)."""
        if limiter is None:
            limiter = RateLimiter(requests_per_minute, clock=clock, sleep=sleep)
        api = HttpApi(
            name="syncro", base_url=base_url, auth=BearerToken(api_token), limiter=limiter,
            timeout=timeout, transport=transport, auth_failure=_auth_failure,
            max_attempts=max_attempts, sleep=sleep,
        )
        return cls(api, concurrency=concurrency)

    def close(self) -> None:
        """Close the connection pool."""
        self.api.close()

    def __enter__(self) -> SyncroClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- identity

    def me(self) -> SyncroUser:
        """The token's owner; the cheapest proof that the token works."""
        p = _parse(_UserPayload, self.api.get_json("me"), "me")
        return SyncroUser(user_id=p.user_id, user_email=p.user_email, user_name=p.user_name,
                          subdomain=p.subdomain)

    def check_permissions(self) -> None:
        """Probe one page of each collection the daemon reads; 401 names the missing permission.

        Write permissions (products create/edit, recurring invoices edit) cannot be probed
        without writing; their 401 surfaces as a `ConfigError` on the first write.
        """
        self.api.get_json("customers", params={"page": 1}, permission=Permission.CUSTOMERS_LIST)
        self.api.get_json("products", params={"page": 1}, permission=Permission.PRODUCTS_LIST)
        self.api.get_json("schedules", params={"page": 1}, permission=Permission.SCHEDULES_LIST)

    # -- customers

    def list_customers(self, *, include_disabled: bool = False) -> list[Customer]:
        """Every customer (disabled ones only when asked), in Syncro's order."""
        params = {"include_disabled": "true"} if include_disabled else {}
        return [
            _to_customer(_parse(_CustomerPayload, item, "customer"))
            for item in self._collection("customers", "customers", params,
                                         Permission.CUSTOMERS_LIST)
        ]

    def get_customer(self, customer_id: int) -> Customer:
        """One customer by id."""
        body = self.api.get_json(f"customers/{customer_id}", permission=Permission.CUSTOMERS_VIEW)
        return _to_customer(_parse(_CustomerPayload, _unwrap(body, "customer", "customer"),
                                   "customer"))

    # -- products

    def list_products(self, *, name: str | None = None) -> list[Product]:
        """Every product, disabled ones included; `name` filters by substring (Syncro's rule)."""
        params = {"name": name} if name else {}
        return [
            _to_product(_parse(_ProductPayload, item, "product"))
            for item in self._collection("products", "products", params, Permission.PRODUCTS_LIST)
        ]

    def get_product(self, product_id: int) -> Product:
        """One product by id; `NotFoundError` when it is gone."""
        body = self.api.get_json(f"products/{product_id}", permission=Permission.PRODUCTS_LIST)
        return _to_product(_parse(_ProductPayload, _unwrap(body, "product", "product"), "product"))

    def create_product(self, draft: ProductDraft) -> Product:
        """Create a product, or find the one an earlier, unanswered attempt created.

        Product names are the daemon's keys (`PC_<SKU>`), so an exact name match after an
        ambiguous failure proves the create landed. It is sent again only when the server
        said it was done with the request (see `_resend_or_raise`).

        Raises:
            AmbiguousWriteError: the create may still land; the next pass adopts it by name.
        """
        body = {
            "name": draft.name, "description": draft.description,
            "price_cost": draft.price_cost, "price_retail": draft.price_retail,
            "taxable": draft.taxable, "disabled": draft.disabled, "maintain_stock": False,
        }
        for _ in range(3):
            try:
                answer = self.api.request("POST", "products", json_body=body,
                                            permission=Permission.PRODUCTS_CREATE)
            except AmbiguousWriteError as exc:
                landed = [p for p in self.list_products(name=draft.name) if p.name == draft.name]
                if landed:
                    log.info("syncro.create_recovered", kind="product", id=landed[0].id)
                    return landed[0]
                _resend_or_raise(exc)
                continue
            data = _unwrap(answer, "product", "product")
            return _to_product(_parse(_ProductPayload, data, "product"))
        raise AmbiguousWriteError(f"syncro: creating product {draft.name!r} kept failing")

    def update_product(
        self,
        product: Product,
        *,
        price_cost: Decimal | None = None,
        price_retail: Decimal | None = None,
        disabled: bool | None = None,
    ) -> Product:
        """Change only the given fields of `product` (read just before).

        Syncro resets `maintain_stock` when it is omitted (assumed-shapes §1.5), so the value
        read is always sent back.
        """
        body: dict[str, Any] = {"maintain_stock": product.maintain_stock}
        if price_cost is not None:
            body["price_cost"] = price_cost
        if price_retail is not None:
            body["price_retail"] = price_retail
        if disabled is not None:
            body["disabled"] = disabled
        answer = self.api.request("PUT", f"products/{product.id}", json_body=body,
                                    permission=Permission.PRODUCTS_EDIT)
        data = _unwrap(answer, "product", "product")
        return _to_product(_parse(_ProductPayload, data, "product"))

    # -- schedules (recurring invoices)

    def list_schedules(self, *, customer_id: int | None = None) -> list[Schedule]:
        """Schedules without their lines (lists carry none); filter by customer when given."""
        params = {"customer_id": customer_id} if customer_id is not None else {}
        return [
            _to_schedule(_parse(_SchedulePayload, item, "schedule"))
            for item in self._collection("schedules", "schedules", params,
                                         Permission.SCHEDULES_LIST)
        ]

    def get_schedule(self, schedule_id: int) -> Schedule:
        """One schedule with its lines; `NotFoundError` when it is gone."""
        body = self.api.get_json(f"schedules/{schedule_id}", permission=Permission.SCHEDULES_LIST)
        payload = _parse(_SchedulePayload, _unwrap(body, "schedule", "schedule"), "schedule")
        if payload.lines is None:
            # Read as "no lines", every line of the daemon's would look deleted and be added
            # again beside the real one.
            raise InvariantError(f"syncro: unexpected schedule payload: schedule {payload.id}: "
                                 "lines is missing or null")
        return _to_schedule(payload)

    def get_schedules(self, schedule_ids: Collection[int]) -> dict[int, Schedule | None]:
        """Each schedule with its lines, by id (None when gone), several requests in flight.

        The reads are independent and share the client's rate limiter, so overlapping them
        keeps the limit's budget used while each waits for its answer.
        """
        def one(schedule_id: int) -> Schedule | None:
            try:
                return self.get_schedule(schedule_id)
            except NotFoundError:
                return None

        ids = sorted(schedule_ids)
        return dict(zip(ids, overlapped(one, ids, workers=self.concurrency), strict=True))

    def create_schedule_line(
        self, schedule_id: int, draft: LineDraft, *, known_line_ids: Collection[int]
    ) -> ScheduleLine:
        """Add a line, or find the one an earlier, unanswered attempt added.

        `known_line_ids` are the schedule's line ids read before planning: after an ambiguous
        failure, a line of the same product and name that is not among them is the one that
        landed (the daemon's line names are unique per schedule: a product name, or a
        one-time charge's name with its SKU, period and reason). It is sent again only when
        the server said it was done with the request (see `_resend_or_raise`).

        Raises:
            AmbiguousWriteError: the line may still land; the next pass adopts it (a charge:
                settles its intent) when it finds it.
        """
        body: dict[str, Any] = {
            "product_id": draft.product_id, "name": draft.name, "quantity": draft.quantity,
            "retail_cents": to_cents(draft.retail), "cost_cents": to_cents(draft.cost),
            "taxable": draft.taxable, "one_time_charge": draft.one_time_charge,
        }
        if draft.description is not None:
            body["description"] = draft.description
        path = f"schedules/{schedule_id}/line_items"
        for _ in range(3):
            try:
                answer = self.api.request("POST", path, json_body=body,
                                            permission=Permission.SCHEDULES_EDIT)
            except NotFoundError:
                raise self._vanished(schedule_id, None) from None
            except AmbiguousWriteError as exc:
                landed = [
                    line for line in self.get_schedule(schedule_id).lines
                    if line.product_id == draft.product_id and line.name == draft.name
                    and line.id not in known_line_ids
                ]
                if landed:
                    log.info("syncro.create_recovered", kind="line", id=landed[0].id)
                    return landed[0]
                _resend_or_raise(exc)
                continue
            data = _unwrap(answer, "schedule_line_item", "schedule line")
            return _to_line(_parse(_LinePayload, data, "schedule line"), schedule_id)
        raise AmbiguousWriteError(
            f"syncro: adding a line of product {draft.product_id} to schedule {schedule_id} "
            "kept failing"
        )

    def update_schedule_line(
        self,
        schedule_id: int,
        line_id: int,
        *,
        quantity: Decimal | None = None,
        retail: Decimal | None = None,
        cost: Decimal | None = None,
    ) -> ScheduleLine:
        """Set the given fields of a line; Syncro's line PUT is partial (§4.4)."""
        body: dict[str, Any] = {}
        if quantity is not None:
            body["quantity"] = quantity
        if retail is not None:
            body["retail_cents"] = to_cents(retail)
        if cost is not None:
            body["cost_cents"] = to_cents(cost)
        try:
            answer = self.api.request("PUT", f"schedules/{schedule_id}/line_items/{line_id}",
                                        json_body=body, permission=Permission.SCHEDULES_EDIT)
        except NotFoundError:
            raise self._vanished(schedule_id, line_id) from None
        data = _unwrap(answer, "schedule_line_item", "schedule line")
        return _to_line(_parse(_LinePayload, data, "schedule line"), schedule_id)

    def delete_schedule_line(self, schedule_id: int, line_id: int) -> None:
        """Remove a line; a line already gone counts as removed (a retried DELETE sees 404)."""
        try:
            self.api.request("DELETE", f"schedules/{schedule_id}/line_items/{line_id}",
                             permission=Permission.SCHEDULES_EDIT)
        except NotFoundError:
            log.info("syncro.delete_already_gone", schedule_id=schedule_id, line_id=line_id)

    def _vanished(self, schedule_id: int, line_id: int | None) -> NotFoundError:
        """The error for a write that met 404: says whether the recurring invoice itself or
        only the line is gone (one read to tell), so the operator knows what to fix."""
        try:
            self.get_schedule(schedule_id)
        except NotFoundError:
            return NotFoundError(
                f"syncro: recurring invoice {schedule_id} no longer exists (deleted in Syncro "
                "since this pass read it); the next sync reports it: map the customer to "
                "another recurring invoice", status=404)
        if line_id is None:
            return NotFoundError(f"syncro: adding a line to recurring invoice {schedule_id} "
                                 "answered 404 (not found)", status=404)
        return NotFoundError(
            f"syncro: line {line_id} is no longer on recurring invoice {schedule_id} (deleted "
            "in Syncro since this pass read it); the next sync plans it again", status=404)

    # -- paging

    def _collection(
        self, path: str, key: str, params: Mapping[str, Any], permission: str
    ) -> Iterator[Any]:
        def fetch(page: int) -> Page:
            body = self.api.get_json(path, params={**params, "page": page}, permission=permission)
            items = _unwrap(body, key, path)
            if not isinstance(items, list):
                raise InvariantError(f"syncro: {path} response: {key!r} is not a list")
            meta = body.get("meta") if isinstance(body.get("meta"), Mapping) else None
            total = meta.get("total_pages") if meta else None
            return Page(items=items, total_pages=int(total) if total is not None else None)

        return paginate(fetch)
