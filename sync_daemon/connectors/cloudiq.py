"""Crayon Cloud-iQ connector: the partner's unapplied CSP billing statements as a `Snapshot`.

Follows `shared/reference/vendor-apis.md` §C.2-§C.3 and `assumed-shapes.md` §3: an OAuth2 password
grant with PascalCase token JSON and single-use refresh tokens, `{"Items", "TotalHits"}` paging,
and each statement's records read from its base64 JSON file. Every record is parsed on its own,
so one malformed record is its tenant's problem, never the statement's.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import time
from collections import defaultdict
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Annotated, Any, Protocol, TypeVar

import httpx
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ValidationError,
)
from pydantic.alias_generators import to_pascal

from sync_daemon.connectors.http import (
    HttpApi,
    Page,
    RateLimiter,
    default_messages,
    messages_from_body,
    paginate,
    retry_after_seconds,
)
from sync_daemon.errors import ConfigError, InvariantError, NotFoundError, TransientError
from sync_daemon.logs import get_logger
from sync_daemon.settings import CloudiqSettings
from sync_daemon.vendor import (
    Charge,
    Snapshot,
    SourceCustomer,
    SourceProblem,
    SourceProduct,
    Statement,
    Usage,
)

log = get_logger()

CENT = Decimal("0.01")
SCOPE = "CustomerApi"
PAGE_SIZE = 50  # the official SDK's default (vendor-apis.md §C.3); no maximum is documented
HISTORY_MONTHS = 13  # the current month and the twelve before it
# Enums are integers (assumed-shapes.md §3.3-§3.4).
SEAT, USAGE, ONE_TIME = 1, 2, 3
MONTHLY, ANNUAL = 1, 2
MAX_SEATS = 1_000_000  # a seat count above this is corrupt data


# ---------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class CloudiqLogin:
    """The API user behind the token (`GET /me`); the token it echoes is never kept."""

    user_id: str
    user_name: str


@dataclass(frozen=True, slots=True)
class CloudiqOrganization:
    """The partner's organization (`GET /organizations/{id}`)."""

    id: int
    name: str


@dataclass(frozen=True, slots=True)
class InvoiceProfile:
    """An invoice profile; its name is the daemon's billing motion."""

    id: int
    name: str


@dataclass(frozen=True, slots=True)
class CustomerTenant:
    """A customer tenant; `id` is the Cloud-iQ id as text (records carry it as a string)."""

    id: str
    name: str
    domain: str | None
    invoice_profile: InvoiceProfile | None


@dataclass(frozen=True, slots=True)
class MalformedTenant:
    """A customer tenant that could not be parsed; the other fields are what could be read.

    `profile_unreadable` tells an invoice profile that is there but broken from none at all.
    """

    position: int
    reason: str
    id: str | None = None
    name: str | None = None
    invoice_profile: InvoiceProfile | None = None
    profile_unreadable: bool = False


TenantResult = CustomerTenant | MalformedTenant


@dataclass(frozen=True, slots=True)
class AgreementProduct:
    """One price-list row: a PartNumber for one term and billing cycle, priced per period.

    `cost` is Crayon's `SalesPrice` and `retail` its `RecommendedRetailPrice`, per month when
    billed monthly and per year when billed annually (assumed-shapes.md §3.5).
    """

    part_number: str
    name: str
    term: str | None
    billing_cycle: int | None
    cost: Decimal
    retail: Decimal

    @property
    def sku(self) -> str | None:
        """The daemon's SKU for this row, None for a term/cycle the daemon does not bill."""
        return sku_for(self.part_number, self.term, self.billing_cycle)


@dataclass(frozen=True, slots=True)
class MalformedProduct:
    """A price-list row that could not be parsed; `position` is its 0-based index."""

    position: int
    reason: str
    part_number: str | None = None


ProductResult = AgreementProduct | MalformedProduct


@dataclass(frozen=True, slots=True)
class BillingStatement:
    """A billing statement; the period is inclusive (first and last day)."""

    id: int
    invoice_profile: InvoiceProfile | None
    start_on: date
    end_on: date
    total: Decimal
    provision_type: int


@dataclass(frozen=True, slots=True)
class BillingRecord:
    """One line of a statement's billing-records file (assumed-shapes.md §3.7).

    `cost`/`unit_cost` are `Amount`/`ItemUnitPrice` (what the partner pays),
    `retail`/`unit_retail` are `ResellerSalesPriceTotal`/`ResellerSalesUnitPrice`; the charge
    period `start_on`..`end_on` is inclusive.
    """

    id: int
    tenant_id: str
    tenant_name: str
    tenant_domain: str | None
    subscription_id: int | None
    part_number: str
    product_name: str
    start_on: date
    end_on: date
    quantity: Decimal
    unit_cost: Decimal
    cost: Decimal
    unit_retail: Decimal
    retail: Decimal
    provision_type: int
    billing_cycle: int | None
    term: str | None

    @property
    def sku(self) -> str | None:
        """The daemon's SKU for this record, None for a term/cycle the daemon does not bill."""
        return sku_for(self.part_number, self.term, self.billing_cycle)


@dataclass(frozen=True, slots=True)
class MalformedRecord:
    """A record that could not be parsed; the other fields are what could still be read."""

    position: int
    reason: str
    record_id: int | None = None
    tenant_id: str | None = None
    tenant_name: str | None = None


RecordResult = BillingRecord | MalformedRecord


def sku_for(part_number: str, term: str | None, billing_cycle: int | None) -> str | None:
    """The SKU of one PartNumber x term x billing cycle, or None when the daemon cannot bill it.

    `CFQ7TTC0LCHC:0002` bought for a month is `CFQ7TTC0LCHC:0002:P1M`; for a year billed monthly
    `…:P1Y:M`, billed annually `…:P1Y:A`; a usage product (no term, e.g. the Azure plan) keeps the
    bare PartNumber. Other terms and cycles (three years, quarterly) are not billed.
    """
    if not term:
        return part_number
    term = term.strip().upper()
    if term == "P1M" and billing_cycle == MONTHLY:
        return f"{part_number}:P1M"
    if term == "P1Y" and billing_cycle == MONTHLY:
        return f"{part_number}:P1Y:M"
    if term == "P1Y" and billing_cycle == ANNUAL:
        return f"{part_number}:P1Y:A"
    return None


# ------------------------------------------------------- payload parsing


def _money(value: Any) -> Decimal:
    """Money as a number, a numeric string or a `{"Value", "CurrencyCode"}` price object."""
    if isinstance(value, Mapping):
        value = value.get("Value")
    if value is None or isinstance(value, bool):
        raise ValueError(f"expected an amount, got {value!r}")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"expected an amount, got {value!r}") from None
    if not number.is_finite():
        raise ValueError(f"expected an amount, got {value!r}")
    return number


def _text(value: Any) -> str:
    """Text, or an id sent as a number (a tenant `Id` is a string in records, §3.7)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise ValueError(f"expected text, got {value!r}")  # noqa: TRY004  pydantic wants ValueError
    if not value.strip():
        raise ValueError("must not be empty")
    return value.strip()


def _optional_text(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return _text(value)


def _date_part(value: Any) -> date:
    """The date of `YYYY-MM-DD`, `DateTime` or `DateTimeOffset` text (§3.3); periods are days."""
    if not isinstance(value, str):
        raise ValueError(f"expected a date, got {value!r}")  # noqa: TRY004  pydantic wants ValueError
    try:
        return date.fromisoformat(value.strip()[:10])
    except ValueError:
        raise ValueError(f"expected a date, got {value!r}") from None


Money = Annotated[Decimal, BeforeValidator(_money)]
Text = Annotated[str, BeforeValidator(_text)]
OptionalText = Annotated[str | None, BeforeValidator(_optional_text)]
Day = Annotated[date, BeforeValidator(_date_part)]


class _Payload(BaseModel):
    # Cloud-iQ answers in PascalCase; unknown fields are ignored (the record carries dozens).
    model_config = ConfigDict(extra="ignore", frozen=True, alias_generator=to_pascal)


class _TokenPayload(_Payload):
    access_token: str | None = None
    refresh_token: str | None = None
    error: str | None = None
    expires_in: int | None = None


class _MePayload(_Payload):
    user_id: OptionalText = None
    user_name: OptionalText = None


class _ReferencePayload(_Payload):
    id: int
    name: str | None = None


class _OrganizationPayload(_Payload):
    id: int
    name: Text


class _InvoiceProfilePayload(_Payload):
    id: int
    name: Text


class _TenantPayload(_Payload):
    id: Text
    name: Text
    domain: OptionalText = None
    invoice_profile: _ReferencePayload | None = None


class _VariantPayload(_Payload):
    part_number: Text
    product_name: OptionalText = None
    purchase_period: OptionalText = None
    default_billing_cycle_id: int | None = None


class _AgreementProductPayload(_Payload):
    name: OptionalText = None
    product_variant: _VariantPayload
    sales_price: Money
    recommended_retail_price: Money


class _StatementPayload(_Payload):
    id: int
    total_sales_price: Money
    invoice_profile: _ReferencePayload | None = None
    start_date: Day
    end_date: Day
    provision_type: int


class _RecordTenantPayload(_Payload):
    id: Text
    name: Text
    domain: OptionalText = None


class _RecordSubscriptionPayload(_Payload):
    id: int | None = None


class _RecordProductPayload(_Payload):
    part_number: Text
    item_name: OptionalText = None


class _RecordPayload(_Payload):
    id: int
    customer_tenant: _RecordTenantPayload
    subscription: _RecordSubscriptionPayload | None = None
    product: _RecordProductPayload
    start_date: Day
    end_date: Day
    quantity: Money
    item_unit_price: Money
    amount: Money
    reseller_sales_unit_price: Money
    reseller_sales_price_total: Money
    provision_type: int
    billing_cycle: int | None = None
    term_duration: OptionalText = None


def _reasons(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error["loc"]) or "value"
        message = "missing" if error["type"] == "missing" else str(error["msg"])
        parts.append(f"{where}: {message.removeprefix('Value error, ')}")
    return "; ".join(parts)


def _lenient(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def _lenient_text(value: Any) -> str | None:
    try:
        return _optional_text(value)
    except ValueError:
        return None


def _lenient_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse_record(data: Any, position: int) -> RecordResult:
    """One decoded billing record: a `BillingRecord`, or a `MalformedRecord` saying why not."""
    if not isinstance(data, Mapping):
        return MalformedRecord(position, f"expected a record object, got {type(data).__name__}")
    try:
        p = _RecordPayload.model_validate(data)
        reason = _implausible(p)
    except ValidationError as exc:
        reason = _reasons(exc)
    if reason is not None:
        return MalformedRecord(
            position, reason, record_id=_lenient_int(data.get("Id")),
            tenant_id=_lenient_text(_lenient(data, "CustomerTenant", "Id")),
            tenant_name=_lenient_text(_lenient(data, "CustomerTenant", "Name")),
        )
    return BillingRecord(
        id=p.id, tenant_id=p.customer_tenant.id, tenant_name=p.customer_tenant.name,
        tenant_domain=p.customer_tenant.domain.lower() if p.customer_tenant.domain else None,
        subscription_id=p.subscription.id if p.subscription else None,
        part_number=p.product.part_number,
        product_name=p.product.item_name or p.product.part_number,
        start_on=p.start_date, end_on=p.end_date, quantity=p.quantity,
        unit_cost=p.item_unit_price, cost=p.amount, unit_retail=p.reseller_sales_unit_price,
        retail=p.reseller_sales_price_total, provision_type=p.provision_type,
        billing_cycle=p.billing_cycle, term=p.term_duration,
    )


def _implausible(p: _RecordPayload) -> str | None:
    """What makes a well-typed record unusable, or None."""
    if p.end_date < p.start_date:
        return f"EndDate {p.end_date} is before StartDate {p.start_date}"
    if p.provision_type == SEAT:
        if p.quantity != p.quantity.to_integral_value() or not 0 <= p.quantity <= MAX_SEATS:
            return f"Quantity: {p.quantity} is not a seat count"
        if p.subscription is None or p.subscription.id is None:
            return "Subscription.Id: missing (a seat record belongs to a subscription)"
    return None


def parse_tenant(data: Any, position: int) -> TenantResult:
    """One customer tenant: a `CustomerTenant`, or a `MalformedTenant` saying why not."""
    if not isinstance(data, Mapping):
        return MalformedTenant(position, f"expected a tenant object, got {type(data).__name__}")
    try:
        p = _TenantPayload.model_validate(data)
    except ValidationError as exc:
        raw = data.get("InvoiceProfile")
        try:
            profile = _profile(_ReferencePayload.model_validate(raw)) if raw is not None else None
        except ValidationError:
            profile = None
        return MalformedTenant(position, _reasons(exc), id=_lenient_text(data.get("Id")),
                               name=_lenient_text(data.get("Name")), invoice_profile=profile,
                               profile_unreadable=raw is not None and profile is None)
    return CustomerTenant(id=p.id, name=p.name, domain=p.domain.lower() if p.domain else None,
                          invoice_profile=_profile(p.invoice_profile))


def parse_agreement_product(data: Any, position: int) -> ProductResult:
    """One price-list row: an `AgreementProduct`, or a `MalformedProduct` saying why not."""
    if not isinstance(data, Mapping):
        return MalformedProduct(position, f"expected a product object, got {type(data).__name__}")
    try:
        p = _AgreementProductPayload.model_validate(data)
    except ValidationError as exc:
        return MalformedProduct(position, _reasons(exc),
                                _lenient_text(_lenient(data, "ProductVariant", "PartNumber")))
    variant = p.product_variant
    return AgreementProduct(
        part_number=variant.part_number, name=variant.product_name or p.name or variant.part_number,
        term=variant.purchase_period, billing_cycle=variant.default_billing_cycle_id,
        cost=p.sales_price, retail=p.recommended_retail_price,
    )


_P = TypeVar("_P", bound=_Payload)


def _parse(model: type[_P], data: Any, what: str) -> _P:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvariantError(f"cloudiq: unexpected {what}: {_reasons(exc)}") from None


def _profile(p: _ReferencePayload | None) -> InvoiceProfile | None:
    return InvoiceProfile(p.id, (p.name or "").strip()) if p is not None else None


def decode_records_file(body: Any, statement_id: int) -> list[Any]:
    """The JSON array inside a billing-records file (`Data`: base64 UTF-8 JSON, never zipped).

    Raises:
        InvariantError: the file is not base64 of a JSON array; no record of it can be trusted.
    """
    where = f"cloudiq: billing records file of statement {statement_id}"
    data = body.get("Data") if isinstance(body, Mapping) else None
    if not isinstance(data, str):
        raise InvariantError(f"{where} has no base64 'Data'")
    try:
        raw = base64.b64decode(data, validate=True)
        records = json.loads(raw.decode("utf-8-sig"), parse_float=Decimal)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvariantError(
            f"{where} is not base64 of UTF-8 JSON ({type(exc).__name__})") from None
    if not isinstance(records, list):
        raise InvariantError(f"{where} does not hold a JSON array")
    return records


# ----------------------------------------------------------------- auth

Flow = Generator[httpx.Request, httpx.Response, None]

# Token endpoint `Error` values (assumed-shapes.md §3.1) and what the operator must do.
TOKEN_ERRORS = {
    "invalid_client": "bad client id or secret: check cloudiq.client_id and "
                      "cloudiq.client_secret (Cloud-iQ → API Management)",
    "invalid_grant": "bad username or password: check cloudiq.username and cloudiq.password",
    "invalid_scope": f"the API client may not request the {SCOPE} scope: ask Crayon to allow it",
    "unsupported_grant_type": "the API client does not allow the password grant: register it "
                              "for the resource-owner password flow",
}


class _GrantRefusedError(ConfigError):
    """The token endpoint answered with an `Error`; `error` is that value."""

    def __init__(self, error: str, grant: str, status: int) -> None:
        hint = TOKEN_ERRORS.get(error, "see the Cloud-iQ API documentation")
        super().__init__(
            f"cloudiq: the token endpoint refused the {grant} grant ({status} {error}): {hint}")
        self.error = error


class CloudiqTokenAuth(httpx.Auth):
    """OAuth2 password grant with Basic client credentials; bearer tokens renewed in the flow.

    The first request gets a token (`grant_type=password`, `scope=CustomerApi`); a token close
    to expiry is renewed first with `grant_type=refresh_token`. A 401 from the API renews once and
    resends; a second 401 goes back to the caller. Refresh tokens work once (§3.1): each is
    dropped as soon as it is sent, and a refused refresh (`invalid_grant`) falls back to one
    password grant. Token requests bypass the rate limiter (one an hour). Tokens are never
    logged nor put in messages.
    """

    requires_response_body = True
    RENEW_MARGIN_S = 60.0

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        username: str,
        password: str,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._token_url = token_url
        credentials = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode("ascii")
        self._basic = f"Basic {credentials}"
        self._username = username
        self._password = password
        self._clock = clock
        self._access: str | None = None
        self._refresh: str | None = None
        self._renew_at = -math.inf

    def auth_flow(self, request: httpx.Request) -> Flow:
        """Authorize `request`, getting or renewing the token first when needed."""
        if self._access is None:
            yield from self._password_grant()
        elif self._clock() >= self._renew_at:
            yield from self._renew("expiring")
        response = yield self._authorize(request)
        if response.status_code != 401:
            return
        # assumed-shapes.md §3.2: 401 + `WWW-Authenticate: Bearer error="invalid_token"`.
        log.info("cloudiq.token_rejected", path=request.url.path,
                 challenge=response.headers.get("WWW-Authenticate", ""))
        yield from self._renew("rejected")
        yield self._authorize(request)

    def _authorize(self, request: httpx.Request) -> httpx.Request:
        if self._access is None:  # pragma: no cover  every grant sets it or raises
            raise InvariantError("cloudiq: no access token after a successful grant")
        request.headers["Authorization"] = f"Bearer {self._access}"
        return request

    def _renew(self, reason: str) -> Flow:
        refresh, self._refresh = self._refresh, None  # single use, whatever happens next
        if refresh is None:
            yield from self._password_grant()
            return
        try:
            yield from self._grant({"grant_type": "refresh_token", "refresh_token": refresh},
                                   reason=reason)
        except _GrantRefusedError as exc:
            if exc.error != "invalid_grant":
                raise
            log.info("cloudiq.refresh_refused", error=exc.error)
            yield from self._password_grant()

    def _password_grant(self) -> Flow:
        yield from self._grant({"grant_type": "password", "username": self._username,
                                "password": self._password, "scope": SCOPE}, reason="login")

    def _grant(self, form: dict[str, str], *, reason: str) -> Flow:
        request = httpx.Request("POST", self._token_url, data=form, headers={
            "Authorization": self._basic, "Accept": "application/json"})
        response = yield request
        expires_in = self._take(response, form["grant_type"])
        log.info("cloudiq.token_granted", grant=form["grant_type"], reason=reason,
                 expires_in_s=expires_in)

    def _take(self, response: httpx.Response, grant: str) -> int:
        """Keep the tokens of a grant's answer; returns their lifetime in seconds."""
        status = response.status_code
        where = f"cloudiq: token endpoint ({grant} grant)"
        if status in (408, 429) or status >= 500:
            raise TransientError(f"{where} answered {status}",
                                 retry_after=retry_after_seconds(response))
        try:
            body = json.loads(response.content, parse_float=Decimal)
        except ValueError:
            body = None
        if not isinstance(body, Mapping):
            if 400 <= status < 500:  # not the token endpoint at all: a wrong base URL
                raise ConfigError(f"{where} answered {status} without the token JSON: check "
                                  "cloudiq.base_url")
            # A proxy's HTML page with status 200 happens under load.
            raise TransientError(f"{where} answered {status} without the token JSON")
        try:
            p = _TokenPayload.model_validate(body)
        except ValidationError as exc:
            raise InvariantError(f"{where} answered an unexpected token: {_reasons(exc)}") from None
        if p.error:
            raise _GrantRefusedError(p.error, grant, status)
        if not 200 <= status < 300 or not p.access_token:
            raise ConfigError(f"{where} answered {status} without a token or an error")
        lifetime = max(p.expires_in or 0, 0)
        self._access, self._refresh = p.access_token, p.refresh_token or None
        self._renew_at = self._clock() + lifetime - min(self.RENEW_MARGIN_S, lifetime / 2)
        return lifetime


# ----------------------------------------------------------------- client


def _messages(response: httpx.Response) -> list[str]:
    """`Message` and `ObjectErrors` of Cloud-iQ's error body (§3.2); anything else as usual."""
    try:
        body = json.loads(response.content, parse_float=Decimal)
    except ValueError:
        return default_messages(response)
    if not isinstance(body, Mapping) or not ({"ErrorCode", "Message"} & body.keys()):
        return messages_from_body(body)
    found = [str(body["Message"])] if body.get("Message") else []
    errors = body.get("ObjectErrors")
    for item in errors if isinstance(errors, list) else []:
        if isinstance(item, Mapping):
            found.append(", ".join(f"{k}: {v}" for k, v in item.items() if v not in (None, "")))
        elif item:
            found.append(str(item))
    return found or ([str(body["ErrorCode"])] if body.get("ErrorCode") else [])


def _auth_failure(response: httpx.Response, permission: str | None) -> str:
    if response.status_code == 401:
        return ("Cloud-iQ refused a freshly issued access token (401 Unauthorized): the API "
                "user may be disabled or lack API access; check cloudiq.username")
    reasons = "; ".join(_messages(response)) or "no reason given"
    return (f"the API user may not read {permission or 'this resource'} (403 Forbidden: "
            f"{reasons}): check cloudiq.organization_id and the user's organization access")


class CloudiqClient:
    """Typed access to the Crayon API endpoints the daemon reads."""

    def __init__(self, api: HttpApi, *, page_size: int = PAGE_SIZE) -> None:
        self.api = api
        self.page_size = page_size

    @classmethod
    def connect(
        cls,
        base_url: str,
        client_id: str,
        client_secret: str,
        username: str,
        password: str,
        *,
        requests_per_minute: int = 120,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        max_attempts: int = 6,
        page_size: int = PAGE_SIZE,
    ) -> CloudiqClient:
        """Build a client for `https://api.crayon.com/api/v1` (or a sandbox of it).

        `clock` drives both the rate limiter and the token's expiry.
        """
        auth = CloudiqTokenAuth(f"{base_url.rstrip('/')}/connect/token", client_id,
                                client_secret, username, password, clock=clock)
        limiter = RateLimiter(requests_per_minute, clock=clock, sleep=sleep)
        api = HttpApi(
            name="cloudiq", base_url=base_url, auth=auth, limiter=limiter, timeout=timeout,
            transport=transport, messages=_messages, auth_failure=_auth_failure,
            max_attempts=max_attempts, sleep=sleep,
        )
        return cls(api, page_size=page_size)

    def close(self) -> None:
        """Close the connection pool."""
        self.api.close()

    def __enter__(self) -> CloudiqClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def me(self) -> CloudiqLogin:
        """The API user; the cheapest proof that the client and user credentials work."""
        p = _parse(_MePayload, self.api.get_json("me"), "/me payload")
        return CloudiqLogin(user_id=p.user_id or "", user_name=p.user_name or "")

    def get_organization(self, organization_id: int) -> CloudiqOrganization:
        """One organization; `NotFoundError` when it is unknown or not the user's (§3.2)."""
        body = self.api.get_json(f"organizations/{organization_id}",
                                 permission=f"organization {organization_id}")
        p = _parse(_OrganizationPayload, body, "organization")
        return CloudiqOrganization(id=p.id, name=p.name)

    def list_customer_tenants(self, organization_id: int) -> list[TenantResult]:
        """Every customer tenant of the organization, each parsed on its own."""
        return [parse_tenant(item, position) for position, item
                in enumerate(self._collection("customertenants", organization_id))]

    def list_invoice_profiles(self, organization_id: int) -> list[InvoiceProfile]:
        """Every invoice profile of the organization (the billing motions to choose from)."""
        return [
            InvoiceProfile(p.id, p.name)
            for p in (_parse(_InvoiceProfilePayload, item, "invoice profile")
                      for item in self._collection("invoiceprofiles", organization_id))
        ]

    def list_agreement_products(self, organization_id: int) -> list[ProductResult]:
        """The price list: one row per PartNumber x term x billing cycle, each parsed on its own."""
        return [parse_agreement_product(item, position) for position, item
                in enumerate(self._collection("agreementproducts", organization_id))]

    def list_billing_statements(
        self,
        organization_id: int,
        *,
        from_: date,
        to: date,
        invoice_profile_id: int = 0,
        provision_type: int = 0,
    ) -> list[BillingStatement]:
        """Statements whose period overlaps `from_`..`to` (§3.6); 0 means "any" (§3.3)."""
        params = {"invoiceProfileId": invoice_profile_id, "provisionType": provision_type,
                  "from": from_.isoformat(), "to": to.isoformat()}
        statements = []
        for item in self._collection("billingstatements", organization_id, params):
            p = _parse(_StatementPayload, item, "billing statement")
            statements.append(BillingStatement(
                id=p.id, invoice_profile=_profile(p.invoice_profile), start_on=p.start_date,
                end_on=p.end_date, total=p.total_sales_price, provision_type=p.provision_type))
        return statements

    def billing_records(self, statement_id: int) -> list[RecordResult]:
        """A statement's records, decoded from its base64 JSON file and parsed one by one.

        Raises:
            NotFoundError: no such statement.
            InvariantError: the file itself cannot be decoded.
        """
        body = self.api.get_json(f"billingstatements/{statement_id}/billingrecordsfile")
        records = decode_records_file(body, statement_id)
        return [parse_record(item, position) for position, item in enumerate(records)]

    def _collection(
        self, path: str, organization_id: int, params: Mapping[str, Any] | None = None
    ) -> Iterator[Any]:
        """Items of `{"Items", "TotalHits"}` pages (§3.3); stops at TotalHits or an empty page."""

        def fetch(page: int) -> Page:
            body = self.api.get_json(path, params={
                "organizationId": organization_id, **(params or {}), "page": page,
                "pageSize": self.page_size}, permission=f"organization {organization_id}")
            items = body.get("Items") if isinstance(body, Mapping) else None
            if not isinstance(items, list):
                raise InvariantError(f"cloudiq: /{path} answered without an 'Items' list")
            total = body.get("TotalHits")
            pages = math.ceil(total / self.page_size) if isinstance(total, int) else None
            return Page(items=items, total_pages=pages)

        return paginate(fetch)


# ----------------------------------------------------------------- source


class CloudiqApi(Protocol):
    """What `CloudiqSource` needs from a client; `CloudiqClient` is one."""

    def me(self) -> CloudiqLogin:
        """The API user."""
        ...

    def get_organization(self, organization_id: int) -> CloudiqOrganization:
        """One organization."""
        ...

    def list_customer_tenants(self, organization_id: int) -> list[TenantResult]:
        """Every customer tenant."""
        ...

    def list_invoice_profiles(self, organization_id: int) -> list[InvoiceProfile]:
        """Every invoice profile."""
        ...

    def list_agreement_products(self, organization_id: int) -> list[ProductResult]:
        """The price list."""
        ...

    def list_billing_statements(
        self, organization_id: int, *, from_: date, to: date, invoice_profile_id: int = 0,
        provision_type: int = 0,
    ) -> list[BillingStatement]:
        """Statements overlapping a period."""
        ...

    def billing_records(self, statement_id: int) -> list[RecordResult]:
        """A statement's records."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def history_window(today: date, months: int = HISTORY_MONTHS) -> tuple[date, date]:
    """From the first day of the month `months - 1` before today's, to today."""
    index = today.year * 12 + today.month - 1 - (months - 1)
    return date(index // 12, index % 12 + 1, 1), today


def _cents(amount: Decimal) -> Decimal:
    """Half-up to cents, the way Crayon rounds record totals (§3.7)."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def _seats(quantity: Decimal) -> int:
    return int(quantity)


def _by_period(records: Sequence[BillingRecord]) -> list[BillingRecord]:
    return sorted(records, key=lambda r: (r.start_on, r.end_on, r.id))


def end_quantity(records: Sequence[BillingRecord], period_end: date) -> int:
    """Seats a subscription has at the end of the period: its last record's quantity, or 0
    when that record stops before the period does (cancelled, or replaced by a renewal)."""
    last = _by_period(records)[-1]
    return _seats(last.quantity) if last.end_on >= period_end else 0


@dataclass(frozen=True, slots=True)
class Proration:
    """A seat subscription's correction for one period: totals (may be negative) and why."""

    cost: Decimal
    retail: Decimal
    changes: str


def proration(records: Sequence[BillingRecord], period_start: date,
              period_end: date) -> Proration | None:
    """What Crayon billed for a subscription over one period minus a full period of its end seats.

    The recurring line bills the end-of-period quantity at the full monthly price; Crayon bills
    each charge period by days (assumed-shapes.md §3.7: `unit x quantity x days / days_in_month`,
    rounded half-up to cents per record). The one-time charge that makes the two agree is

        proration = Σ record totals - round_half_up(unit x end quantity, cents)

    with `unit` the unit price of the subscription's last record (so a price change is part of the
    correction) and the end quantity 0 when the last record stops before the period ends. Cost
    uses `Amount`/`ItemUnitPrice`, retail `ResellerSalesPriceTotal`/`ResellerSalesUnitPrice`.
    Seats added mid-period give a credit (the line bills them for days they did not exist), seats
    removed a charge. §3.7's example, 20 seats 1-18 Oct then 23 at 23.76: 275.92 + 229.17 -
    23 x 23.76 = 505.09 - 546.48 = -41.39.

    Returns None when there is nothing to correct: one record covering the whole period.
    """
    ordered = _by_period(records)
    first, last = ordered[0], ordered[-1]
    if len(ordered) == 1 and first.start_on <= period_start and first.end_on >= period_end:
        return None
    seats = end_quantity(ordered, period_end)
    cost = sum((r.cost for r in ordered), Decimal(0)) - _cents(last.unit_cost * seats)
    retail = sum((r.retail for r in ordered), Decimal(0)) - _cents(last.unit_retail * seats)
    return Proration(cost=cost, retail=retail, changes=_changes(ordered, period_start, period_end))


def _changes(ordered: Sequence[BillingRecord], period_start: date, period_end: date) -> str:
    """`20 → 23 seats on 2026-10-19`, one step per change of seats inside the period."""
    steps = []
    seats = 0 if ordered[0].start_on > period_start else _seats(ordered[0].quantity)
    for record in ordered:
        if _seats(record.quantity) != seats:
            steps.append(f"{seats} → {_seats(record.quantity)} seats on {record.start_on}")
            seats = _seats(record.quantity)
    if ordered[-1].end_on < period_end:
        steps.append(f"{seats} → 0 seats on {ordered[-1].end_on + timedelta(days=1)}")
    return ", ".join(steps) or f"{seats} seats, charged in {len(ordered)} parts"


def charge_key(statement_id: int | str, tenant_id: str, sku: str, kind: str,
               subscription_id: int | None = None) -> str:
    """`cloudiq:charge:<statement>:<tenant>:<sku>:<kind>[:<subscription>]`: the same charge
    always gets the same key, so it can never land twice."""
    key = f"cloudiq:charge:{statement_id}:{tenant_id}:{sku}:{kind}"
    return key if subscription_id is None else f"{key}:{subscription_id}"


@dataclass(frozen=True, slots=True)
class _Read:
    """One statement to read, and what to take from it."""

    statement: BillingStatement
    motion: str
    unapplied: bool  # charges come from it, and it joins `Snapshot.statements`
    levels: bool  # its monthly seats are the motion's current counts


@dataclass
class _Pass:
    """What one `fetch` gathers before it becomes a `Snapshot`."""

    prices: dict[str, AgreementProduct]
    customers: dict[tuple[str, str], SourceCustomer] = field(default_factory=dict)
    levels: dict[tuple[str, str, str], tuple[int, str]] = field(default_factory=dict)
    charges: list[Charge] = field(default_factory=list)
    problems: dict[tuple[str | None, str], SourceProblem] = field(default_factory=dict)
    statements: list[Statement] = field(default_factory=list)
    used: dict[str, BillingRecord] = field(default_factory=dict)
    skipped: int = 0

    def see(self, tenant_id: str, name: str, motion: str, domain: str | None) -> None:
        if (tenant_id, motion) not in self.customers:
            self.customers[(tenant_id, motion)] = SourceCustomer(
                id=tenant_id, name=name, billing_motion=motion,
                domains=(domain,) if domain else ())

    def problem(self, message: str, tenant_id: str | None, name: str | None,
                motion: str) -> None:
        # The motion is part of the customer's identity: the planner skips (tenant, motion).
        self.problems.setdefault((tenant_id, message),
                                 SourceProblem(message, tenant_id, name, billing_motion=motion))


class CloudiqSource:
    """The partner's Cloud-iQ billing statements of the last 13 months, as a `Snapshot`.

    Rules (vendor-apis.md §C.2, assumed-shapes.md §3):
    - statements come from the configured billing motions (invoice profiles; none = all); those
      `is_applied` knows are done give no charges and stay out of `Snapshot.statements`;
    - a tenant is a customer once per billing motion it is billed under, and once under its
      invoice profile from the tenant list, so it can be mapped before its first statement;
    - monthly-billed seats (ProvisionType 1, BillingCycle 1) are level data: for each motion,
      the statements of its newest seat period, applied or not, give one usage per tenant and
      SKU, the sum over subscriptions of their end-of-period seats;
    - a seat subscription charged in parts gives one `proration` charge (see `proration`);
      Azure/usage (ProvisionType 2) one `usage` charge per tenant, statement and SKU; annual-billed
      seats one `annual` charge per subscription; usage and annual only when enabled, otherwise
      skipped and logged (`cloudiq.skipped`) - the operator chose it, so it is not a problem;
    - one-time purchases are never synced (§C.2 #8: one-off invoices are not); other terms and
      cycles are a problem for the tenant, as are unreadable records and, in mode `all`, SKUs
      missing from the price list. A problem customer's data is still in the snapshot (with
      statement ids) so the planner can leave it out and keep its statements unapplied.

    Args:
        config: the `[cloudiq]` section.
        is_applied: whether a statement id has been applied already (the state database).
        client_factory: builds the client; tests pass fakes.
        max_attempts: attempts per request for the default client.
        today: the current date (UTC), for the 13-month window.
    """

    name = "cloudiq"

    def __init__(
        self,
        config: CloudiqSettings,
        *,
        is_applied: Callable[[str], bool],
        client_factory: Callable[[], CloudiqApi] | None = None,
        max_attempts: int = 6,
        today: Callable[[], date] = lambda: datetime.now(UTC).date(),
    ) -> None:
        self.config = config
        self._is_applied = is_applied
        self._factory = client_factory or self._connect
        self._max_attempts = max_attempts
        self._today = today
        self._api: CloudiqApi | None = None

    def _connect(self) -> CloudiqApi:
        c = self.config
        return CloudiqClient.connect(
            c.base_url, c.client_id, c.client_secret.get_secret_value(), c.username,
            c.password.get_secret_value(), requests_per_minute=c.requests_per_minute,
            timeout=c.timeout_s, max_attempts=self._max_attempts,
        )

    @property
    def client(self) -> CloudiqApi:
        """The client, created on first use."""
        if self._api is None:
            self._api = self._factory()
        return self._api

    def close(self) -> None:
        """Close the client."""
        api, self._api = self._api, None
        if api is not None:
            api.close()

    def __enter__(self) -> CloudiqSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- check

    def check(self) -> str:
        """Get a token (`GET /me`), then read the organization and the billing motions.

        Raises:
            ConfigError: credentials refused, an organization the user cannot read, or a billing
                motion that is not an invoice profile of the organization.
        """
        login = self.client.me()
        organization_id = self.config.organization_id
        try:
            organization = self.client.get_organization(organization_id)
        except NotFoundError:
            raise ConfigError(
                f"cloudiq: organization {organization_id} is unknown or not visible to the API "
                "user (404): check cloudiq.organization_id") from None
        profiles = self._profiles()
        motions = ", ".join(sorted(profiles.values())) if profiles else "all billing motions"
        return (f"as {login.user_name or login.user_id} for {organization.name} "
                f"({organization.id}); {motions}")

    def _profiles(self) -> dict[int, str] | None:
        """The configured billing motions as invoice profile id → name; None means all."""
        wanted = self.config.billing_motions
        if not wanted:
            return None
        profiles = self.client.list_invoice_profiles(self.config.organization_id)
        by_name = {p.name.casefold(): p for p in profiles}
        unknown = [m for m in wanted if m.casefold() not in by_name]
        if unknown:
            known = ", ".join(sorted(repr(p.name) for p in profiles)) or "none"
            raise ConfigError(
                f"cloudiq.billing_motions: {', '.join(map(repr, unknown))} is not an invoice "
                f"profile of organization {self.config.organization_id} (known: {known})")
        return {by_name[m.casefold()].id: by_name[m.casefold()].name for m in wanted}

    # -- fetch

    def fetch(self) -> Snapshot:
        """Read statements, price list and tenants; turn them into a snapshot.

        Raises:
            ConfigError: credentials refused or a billing motion that does not exist.
            InvariantError: a statement's records file cannot be decoded, or a record or
                tenant cannot be told apart (no tenant id); a partial statement would look like
                seats that were cancelled, so nothing is returned.
        """
        organization_id = self.config.organization_id
        profiles = self._profiles()
        found = _Pass(prices=self._prices())
        for tenant in self.client.list_customer_tenants(organization_id):
            profile = tenant.invoice_profile
            if isinstance(tenant, MalformedTenant) and (tenant.id is None
                                                        or tenant.profile_unreadable):
                # A tenant missing from the list may be one whose mapping would turn Detached.
                raise InvariantError(
                    f"cloudiq: customer tenant #{tenant.position + 1} ({tenant.name or 'no name'}"
                    f") is malformed: {tenant.reason}; without its id and invoice profile the "
                    "daemon cannot tell whose it is, so nothing is synced until it reads whole")
            if profile is None or (profiles is not None and profile.id not in profiles):
                continue
            motion = profiles[profile.id] if profiles else profile.name
            if isinstance(tenant, MalformedTenant):
                found.problem(f"customer tenant {tenant.name or tenant.id} is malformed: "
                              f"{tenant.reason}", tenant.id, tenant.name, motion)
            found.see(tenant.id or "", tenant.name or tenant.id or "", motion,
                      tenant.domain if isinstance(tenant, CustomerTenant) else None)
        for read in self._reads(profiles):
            records = self.client.billing_records(read.statement.id)
            self._read(found, read, records)
        snapshot = self._snapshot(found)
        log.info("cloudiq.fetched", statements=len(snapshot.statements),
                 customers=len(snapshot.customers), products=len(snapshot.products),
                 usages=len(snapshot.usages), charges=len(snapshot.charges),
                 problems=len(snapshot.problems), skipped=found.skipped)
        return snapshot

    def _prices(self) -> dict[str, AgreementProduct]:
        prices: dict[str, AgreementProduct] = {}
        unbilled = 0
        for row in self.client.list_agreement_products(self.config.organization_id):
            if isinstance(row, MalformedProduct):
                log.warning("cloudiq.price_row_malformed", position=row.position,
                            part_number=row.part_number, reason=row.reason)
                continue
            sku = row.sku
            if sku is None:
                unbilled += 1
            elif sku not in prices:
                prices[sku] = row
        if unbilled:
            log.info("cloudiq.price_rows_not_billed", rows=unbilled,
                     reason="term or billing cycle other than P1M, P1Y monthly/annual, usage")
        return prices

    def _reads(self, profiles: dict[int, str] | None) -> list[_Read]:
        """The statements to read, oldest first, and what each one is read for."""
        from_, to = history_window(self._today())
        organization_id = self.config.organization_id
        listed: dict[int, tuple[BillingStatement, str]] = {}
        for profile_id in profiles or [0]:
            for s in self.client.list_billing_statements(organization_id, from_=from_, to=to,
                                                         invoice_profile_id=profile_id):
                profile = s.invoice_profile
                if profiles is None:
                    motion = profile.name if profile is not None else ""
                elif profile is not None and profile.id in profiles:
                    motion = profiles[profile.id]
                else:
                    continue  # the server ignored the filter: never bill another motion
                listed[s.id] = (s, motion)
        newest: dict[str, date] = {}
        for s, motion in listed.values():
            if s.provision_type == SEAT:
                newest[motion] = max(newest.get(motion, s.start_on), s.start_on)
        reads = []
        for s, motion in sorted(listed.values(), key=lambda i: (i[0].start_on, i[0].id)):
            unapplied = not self._is_applied(str(s.id))
            levels = s.provision_type == SEAT and newest.get(motion) == s.start_on
            if unapplied or levels:
                reads.append(_Read(s, motion, unapplied=unapplied, levels=levels))
        return reads

    def _read(self, found: _Pass, read: _Read, records: Sequence[RecordResult]) -> None:
        """Take one statement's records into `found`."""
        s = read.statement
        seats: dict[tuple[str, str, int | None], list[BillingRecord]] = defaultdict(list)
        usage: dict[tuple[str, str], list[BillingRecord]] = defaultdict(list)
        annual: dict[tuple[str, str, int | None], list[BillingRecord]] = defaultdict(list)
        for record in records:
            if isinstance(record, MalformedRecord):
                label = f"#{record.position + 1}" + (f" (id {record.record_id})"
                                                     if record.record_id is not None else "")
                message = f"statement {s.id}: record {label} is unreadable: {record.reason}"
                if record.tenant_id is None:
                    # Whose seats are missing cannot be told: a tenant's total would drop.
                    raise InvariantError(
                        f"cloudiq: {message}; without its tenant the daemon cannot tell whose "
                        "record it is, so nothing is synced until the statement reads whole")
                known = found.customers.get((record.tenant_id, read.motion))
                name = record.tenant_name or (known.name if known else None)
                found.problem(message, record.tenant_id, name, read.motion)
                found.see(record.tenant_id, name or record.tenant_id, read.motion, None)
                continue
            found.see(record.tenant_id, record.tenant_name, read.motion, record.tenant_domain)
            sku = record.sku
            if record.provision_type == SEAT and sku is not None and record.billing_cycle in (
                    MONTHLY, ANNUAL):
                group = seats if record.billing_cycle == MONTHLY else annual
                group[(record.tenant_id, sku, record.subscription_id)].append(record)
            elif record.provision_type == USAGE and sku is not None:
                usage[(record.tenant_id, sku)].append(record)
            elif not read.unapplied:
                continue  # applied already: only its monthly seats matter
            elif record.provision_type == ONE_TIME:
                self._skip(found, read, record, reason="one-time purchases are not synced",
                           warn=True)
            else:
                found.problem(
                    f"statement {s.id}: {record.part_number} ({record.product_name}) has term "
                    f"{record.term or 'none'}, billing cycle {record.billing_cycle} and provision "
                    f"type {record.provision_type}, which the daemon cannot bill",
                    record.tenant_id, record.tenant_name, read.motion)
        if read.levels:
            self._levels(found, read, seats)
        if read.unapplied:
            self._prorations(found, read, seats)
            self._usage_charges(found, read, usage)
            self._annual_charges(found, read, annual)
            found.statements.append(Statement(
                id=str(s.id), billing_motion=read.motion, period_start=s.start_on,
                period_end=s.end_on, total=s.total, provision_type=s.provision_type))

    def _levels(self, found: _Pass, read: _Read,
                seats: Mapping[tuple[str, str, int | None], list[BillingRecord]]) -> None:
        for (tenant_id, sku, _), records in seats.items():
            self._use(found, read, sku, records)
            key = (tenant_id, read.motion, sku)
            before = found.levels.get(key, (0, ""))[0]
            found.levels[key] = (before + end_quantity(records, read.statement.end_on),
                                 str(read.statement.id))

    def _prorations(self, found: _Pass, read: _Read,
                    seats: Mapping[tuple[str, str, int | None], list[BillingRecord]]) -> None:
        s = read.statement
        for (tenant_id, sku, subscription_id), records in seats.items():
            correction = proration(records, s.start_on, s.end_on)
            if correction is None or (correction.cost == 0 and correction.retail == 0):
                continue
            self._use(found, read, sku, records)
            found.charges.append(Charge(
                key=charge_key(s.id, tenant_id, sku, "proration", subscription_id),
                statement_id=str(s.id), customer_id=tenant_id, billing_motion=read.motion,
                sku=sku, kind="proration",
                name=f"{sku} proration {s.start_on}..{s.end_on} ({correction.changes})",
                quantity=Decimal(1), retail=correction.retail, cost=correction.cost))

    def _usage_charges(self, found: _Pass, read: _Read,
                       usage: Mapping[tuple[str, str], list[BillingRecord]]) -> None:
        s = read.statement
        for (tenant_id, sku), records in usage.items():
            if not self.config.sync_azure:
                self._skip(found, read, *records, reason="sync_azure is off")
                continue
            cost = sum((r.cost for r in records), Decimal(0))
            retail = sum((r.retail for r in records), Decimal(0))
            if cost == 0 and retail == 0:
                continue
            self._use(found, read, sku, records)
            found.charges.append(Charge(
                key=charge_key(s.id, tenant_id, sku, "usage"), statement_id=str(s.id),
                customer_id=tenant_id, billing_motion=read.motion, sku=sku, kind="usage",
                name=f"{sku} usage {s.start_on}..{s.end_on} ({records[0].product_name})",
                quantity=Decimal(1), retail=retail, cost=cost))

    def _annual_charges(self, found: _Pass, read: _Read,
                        annual: Mapping[tuple[str, str, int | None], list[BillingRecord]]) -> None:
        s = read.statement
        for (tenant_id, sku, subscription_id), records in annual.items():
            if not self.config.sync_annual:
                self._skip(found, read, *records, reason="sync_annual is off")
                continue
            ordered = _by_period(records)
            first, last = ordered[0], ordered[-1]
            seats = sum(_seats(r.quantity) for r in ordered)
            cost = sum((r.cost for r in ordered), Decimal(0))
            retail = sum((r.retail for r in ordered), Decimal(0))
            self._use(found, read, sku, ordered)
            whole = (len(ordered) == 1 and _cents(last.unit_cost * seats) == cost
                     and _cents(last.unit_retail * seats) == retail)
            found.charges.append(Charge(
                key=charge_key(s.id, tenant_id, sku, "annual", subscription_id),
                statement_id=str(s.id), customer_id=tenant_id, billing_motion=read.motion,
                sku=sku, kind="annual",
                name=f"{sku} annual {first.start_on}..{last.end_on} ({seats} seats)",
                # A whole year is seats x unit price; anything else (seats added mid-term) is
                # billed as its total so the charge equals what Crayon billed.
                quantity=Decimal(seats) if whole else Decimal(1),
                retail=last.unit_retail if whole else retail,
                cost=last.unit_cost if whole else cost))

    def _use(self, found: _Pass, read: _Read, sku: str,
             records: Sequence[BillingRecord]) -> None:
        """Note that `sku` is billed; in mode `all` it must be on the price list."""
        newest = _by_period(records)[-1]
        found.used.setdefault(sku, newest)
        if self.config.product_sync_mode == "all" and sku not in found.prices:
            found.problem(
                f"{sku} ({newest.product_name}) is not on the price list (agreement products): "
                "cannot price it", newest.tenant_id, newest.tenant_name, read.motion)

    def _skip(self, found: _Pass, read: _Read, *records: BillingRecord, reason: str,
              warn: bool = False) -> None:
        first = records[0]
        found.skipped += 1
        (log.warning if warn else log.info)(
            "cloudiq.skipped", statement_id=read.statement.id, customer_id=first.tenant_id,
            customer=first.tenant_name, sku=first.sku or first.part_number, records=len(records),
            cost=str(sum((r.cost for r in records), Decimal(0))), reason=reason)

    def _snapshot(self, found: _Pass) -> Snapshot:
        usages = tuple(
            Usage(customer_id=tenant_id, sku=sku, quantity=quantity, billing_motion=motion,
                  statement_id=statement_id)
            for (tenant_id, motion, sku), (quantity, statement_id) in sorted(found.levels.items())
        )
        if self.config.product_sync_mode == "all":
            rows = found.prices
            products = [SourceProduct(sku, rows[sku].name, rows[sku].cost, rows[sku].retail)
                        for sku in sorted(rows)]
        else:
            products = [self._product(sku, found) for sku in sorted(found.used)]
        customers = sorted(found.customers.values(),
                           key=lambda c: (c.name.casefold(), c.id, c.billing_motion))
        return Snapshot(
            vendor=self.name, customers=tuple(customers), products=tuple(products), usages=usages,
            problems=tuple(found.problems.values()), statements=tuple(found.statements),
            charges=tuple(found.charges))

    @staticmethod
    def _product(sku: str, found: _Pass) -> SourceProduct:
        """A used SKU's product: its price-list row, else the newest record's unit prices
        (usage products have no unit price: their charges carry the amounts)."""
        row = found.prices.get(sku)
        if row is not None:
            return SourceProduct(sku, row.name, row.cost, row.retail)
        record = found.used[sku]
        if record.provision_type == USAGE:
            return SourceProduct(sku, record.product_name, Decimal(0), Decimal(0))
        return SourceProduct(sku, record.product_name, record.unit_cost, record.unit_retail)
