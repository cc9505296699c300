"""Proofpoint Essentials connector: the partner's customer orgs as a vendor-neutral `Snapshot`.

Follows `shared/reference/vendor-apis.md` §A and `assumed-shapes.md` §2: `X-User`/`X-Password`
on every request, one unpaged child list per stack, no documented rate limit or `Retry-After`.
Each org is parsed on its own, so one malformed org is that org's problem, never the whole list's.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Annotated, Any, Protocol
from urllib.parse import quote, urlsplit

import httpx
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from sync_daemon.connectors.http import HttpApi, RateLimiter, default_messages
from sync_daemon.errors import ConfigError, InvariantError, NotFoundError, RejectedError
from sync_daemon.logs import get_logger
from sync_daemon.settings import PackagePrice, ProofpointSettings
from sync_daemon.vendor import (
    Snapshot,
    SourceCustomer,
    SourceProblem,
    SourceProduct,
    Usage,
)

log = get_logger()

SKU_PREFIX = "PPE-"
CUSTOMER_TYPE = "organization"
# User types that take no licence (vendor-apis.md §A.9: a functional account stops consuming one).
UNBILLED_USER_TYPES = frozenset({"functional_account", "silent_user"})
# Essentials is sold to small and mid-size organizations; a count above this is corrupt data.
MAX_SEATS = 100_000
# The permission passed with the child-org list, so that a 403 there is explained as a role problem.
PARTNER_ROLE = "partner admin"
NOT_PARTNER_ADMIN = (
    "the login is not a partner admin (403 Forbidden): listing customer orgs needs a partner "
    "role; Channel Admin is the least privileged role that works (Organization Admin does not)"
)


# ---------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class ProofpointLogin:
    """The login behind `X-User` (`GET /me`)."""

    uid: int
    primary_email: str
    type: str
    is_partner_admin: bool
    entity_primary_domain: str


@dataclass(frozen=True, slots=True)
class ProofpointEndpoint:
    """One stack a domain lives on (`GET /endpoints/{domain}`); `url` is that stack's API base."""

    stack: str
    url: str


@dataclass(frozen=True, slots=True)
class ProofpointOrg:
    """A child org of the partner, well-formed.

    Fields the billing rules need may still be None when Proofpoint left them out; whether that
    matters depends on the org (an inactive org needs no count), so `ProofpointSource` decides.
    `licensing_package` is normalised to Proofpoint's lower-case snake key (`business_plus`);
    `domains` holds the primary domain first, then the others, lower-cased, without repeats.
    """

    eid: int
    name: str
    primary_domain: str
    type: str
    is_active: bool | None
    is_on_trial: bool | None
    licensing_package: str | None
    user_licenses: int | None
    active_users: int | None
    domains: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MalformedOrg:
    """An element of the child list that could not be parsed.

    `position` is its 0-based index in the list; `reason` names every bad field; the other
    fields are what could still be read, None otherwise.
    """

    position: int
    reason: str
    eid: int | None = None
    name: str | None = None
    primary_domain: str | None = None
    type: str | None = None


OrgResult = ProofpointOrg | MalformedOrg


@dataclass(frozen=True, slots=True)
class ProofpointUser:
    """A user of one org (`GET /orgs/{domain}/users`)."""

    uid: int | None
    primary_email: str
    type: str
    is_active: bool
    is_billable: bool

    @property
    def takes_a_licence(self) -> bool:
        """Active, billable and not a functional or silent account."""
        return self.is_active and self.is_billable and self.type not in UNBILLED_USER_TYPES


# ------------------------------------------------------- payload parsing


def normalise_package(raw: str) -> str:
    """A package name as Proofpoint's lower-case snake key: `Business Plus` → `business_plus`.

    `+` reads as "plus" (`Business+` is how the console and integrators print the tier).
    """
    spaced = raw.strip().lower().replace("+", " plus ")
    return re.sub(r"[\s_\-]+", "_", spaced).strip("_")


def sku_for_package(package: str) -> str:
    """The vendor SKU of a package: `business_plus` → `PPE-BUSINESS_PLUS`."""
    return SKU_PREFIX + normalise_package(package).upper()


_WHOLE = re.compile(r"[+-]?[0-9]+")


def _whole_number(value: Any) -> int | None:
    """An int from a JSON number or a numeric string (`"15"`, assumed-shapes §2.5); blank: None."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise ValueError(f"expected a whole number, got {value!r}")  # noqa: TRY004  pydantic wants ValueError
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal | float):
        number = Decimal(str(value))
        if number.is_finite() and number == number.to_integral_value():
            return int(number)
    if isinstance(value, str) and _WHOLE.fullmatch(value.strip()):
        return int(value.strip())
    raise ValueError(f"expected a whole number, got {value!r}")


def _seat_count(value: Any) -> int | None:
    number = _whole_number(value)
    if number is None:
        return None
    if number < 0:
        raise ValueError(f"a seat count cannot be negative (got {number})")
    if number > MAX_SEATS:
        raise ValueError(f"{number} is not a plausible seat count (more than {MAX_SEATS})")
    return number


def _entity_id(value: Any) -> int:
    try:
        number = _whole_number(value)
    except ValueError:
        number = None
    if number is None or number <= 0:
        raise ValueError(f"expected a positive id, got {value!r}")
    return number


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected text, got {value!r}")  # noqa: TRY004  pydantic wants ValueError
    if not value.strip():
        raise ValueError("must not be empty")
    return value.strip()


def _lower_text(value: Any) -> str:
    return _text(value).lower()


def _package(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"expected a package name, got {value!r}")  # noqa: TRY004  pydantic wants ValueError
    return normalise_package(value) or None


def _domain_names(value: Any) -> list[str]:
    """`domains[]` as names: domain objects (assumed-shapes §2.5) or bare strings."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"expected a list of domains, got {type(value).__name__}")  # noqa: TRY004  pydantic wants ValueError
    names = []
    for item in value:
        name = item.get("name") if isinstance(item, Mapping) else item
        if not isinstance(name, str):
            raise ValueError(f"a domain without a name: {item!r}")  # noqa: TRY004  pydantic wants ValueError
        if name.strip():
            names.append(name.strip().lower())
    return names


Count = Annotated[int | None, BeforeValidator(_seat_count)]


class _Payload(BaseModel):
    # Unknown fields are ignored: the org object carries dozens the daemon does not need, and
    # the sender lists come in two spellings (vendor-apis.md §A.5).
    model_config = ConfigDict(extra="ignore", frozen=True)


class _LoginPayload(_Payload):
    uid: Annotated[int, BeforeValidator(_entity_id)]
    primary_email: Annotated[str, BeforeValidator(_text)]
    is_partner_admin: bool
    type: str = ""
    entity_primary_domain: str = ""


class _EndpointPayload(_Payload):
    stack: str = ""
    url: str = ""


class _OrgPayload(_Payload):
    eid: Annotated[int, BeforeValidator(_entity_id)]
    name: Annotated[str, BeforeValidator(_text)]
    primary_domain: Annotated[str, BeforeValidator(_lower_text)]
    type: Annotated[str, BeforeValidator(_lower_text)]
    is_active: bool | None = None
    is_on_trial: bool | None = None
    licensing_package: Annotated[str | None, BeforeValidator(_package)] = None
    user_licenses: Count = None
    active_users: Count = None
    domains: Annotated[list[str], BeforeValidator(_domain_names)] = Field(default_factory=list)


class _UserPayload(_Payload):
    uid: Annotated[int | None, BeforeValidator(_whole_number)] = None
    primary_email: Annotated[str, BeforeValidator(_lower_text)]
    type: Annotated[str, BeforeValidator(_lower_text)]
    is_active: bool
    # "is_billable: bool, default true" (vendor-apis.md §A.5, user object).
    is_billable: bool = True


def _reasons(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error["loc"]) or "org"
        message = "missing" if error["type"] == "missing" else str(error["msg"])
        parts.append(f"{where}: {message.removeprefix('Value error, ')}")
    return "; ".join(parts)


def _lenient(parse: Callable[[Any], Any], value: Any) -> Any:
    try:
        return parse(value)
    except ValueError:
        return None


def parse_org(data: Any, position: int) -> OrgResult:
    """One element of `orgs[]`: a `ProofpointOrg`, or a `MalformedOrg` saying what is wrong."""
    if not isinstance(data, Mapping):
        return MalformedOrg(position, f"expected an org object, got {type(data).__name__}")
    try:
        p = _OrgPayload.model_validate(data)
    except ValidationError as exc:
        return MalformedOrg(
            position, _reasons(exc), eid=_lenient(_entity_id, data.get("eid")),
            name=_lenient(_text, data.get("name")),
            primary_domain=_lenient(_lower_text, data.get("primary_domain")),
            type=_lenient(_lower_text, data.get("type")),
        )
    domains = tuple(dict.fromkeys([p.primary_domain, *p.domains]))
    return ProofpointOrg(
        eid=p.eid, name=p.name, primary_domain=p.primary_domain, type=p.type,
        is_active=p.is_active, is_on_trial=p.is_on_trial, licensing_package=p.licensing_package,
        user_licenses=p.user_licenses, active_users=p.active_users, domains=domains,
    )


def _list_of(body: Any, key: str, what: str) -> list[Any]:
    items = body.get(key) if isinstance(body, Mapping) else None
    if not isinstance(items, list):
        raise InvariantError(f"proofpoint: {what} response has no {key!r} list")
    return items


# ----------------------------------------------------------------- client


class ProofpointCredentials(httpx.Auth):
    """`X-User` and `X-Password` on every request (vendor-apis.md §A.2); not HTTP Basic."""

    def __init__(self, username: str, password: str) -> None:
        self._username = username
        self._password = password

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["X-User"] = self._username
        request.headers["X-Password"] = self._password
        yield request


def _auth_failure(response: httpx.Response, permission: str | None) -> str:
    # Error bodies are undocumented (vendor-apis.md §A.8): the status alone decides.
    if response.status_code == 401:
        return (
            f"{response.request.url.host} refused the username/password (401 Unauthorized): "
            "check proofpoint.username and proofpoint.password; the login needs password "
            "authentication (not SSO only) and must not be read-only"
        )
    if permission == PARTNER_ROLE:
        return NOT_PARTNER_ADMIN
    reasons = "; ".join(default_messages(response)) or "no reason given"
    return f"the login may not read this organization (403 Forbidden: {reasons})"


def _path(*parts: str) -> str:
    return "/".join(quote(part, safe="") for part in parts)


class ProofpointClient:
    """Typed access to the Proofpoint Essentials endpoints the daemon reads, on one stack."""

    def __init__(self, api: HttpApi) -> None:
        self.api = api

    @classmethod
    def connect(
        cls,
        base_url: str,
        username: str,
        password: str,
        *,
        requests_per_minute: int = 120,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        max_attempts: int = 6,
    ) -> ProofpointClient:
        """Build a client for one stack (`https://us1.proofpointessentials.com/api/v1`).

        Proofpoint publishes no rate limit and sends no `Retry-After` with its 429s, so a 429 is
        retried with the exponential back-off of `HttpApi`.
        """
        limiter = RateLimiter(requests_per_minute, clock=clock, sleep=sleep)
        api = HttpApi(
            name="proofpoint", base_url=base_url, auth=ProofpointCredentials(username, password),
            limiter=limiter, timeout=timeout, transport=transport, auth_failure=_auth_failure,
            max_attempts=max_attempts, sleep=sleep,
        )
        return cls(api)

    def close(self) -> None:
        """Close the connection pool."""
        self.api.close()

    def __enter__(self) -> ProofpointClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def me(self) -> ProofpointLogin:
        """The login's metadata; the cheapest proof that the username and password work."""
        try:
            p = _LoginPayload.model_validate(self.api.get_json("me"))
        except ValidationError as exc:
            raise InvariantError(f"proofpoint: unexpected /me payload: {_reasons(exc)}") from None
        return ProofpointLogin(uid=p.uid, primary_email=p.primary_email, type=p.type,
                               is_partner_admin=p.is_partner_admin,
                               entity_primary_domain=p.entity_primary_domain.lower())

    def list_endpoints(self, domain: str) -> list[ProofpointEndpoint]:
        """The stacks `domain` lives on (assumed-shapes §2.3); `NotFoundError` for a domain
        Proofpoint does not know."""
        body = self.api.get_json(_path("endpoints", domain))
        found = []
        for item in _list_of(body, "endpoints", "/endpoints"):
            try:
                p = _EndpointPayload.model_validate(item)
            except ValidationError as exc:
                raise InvariantError(f"proofpoint: unexpected endpoint: {_reasons(exc)}") from None
            found.append(ProofpointEndpoint(stack=p.stack, url=p.url.rstrip("/")))
        return found

    def list_child_orgs(self, partner_domain: str) -> list[OrgResult]:
        """The partner's direct children on this stack, each parsed on its own.

        A 404 means the partner has no orgs on this stack: a partner is reachable only on the
        stacks that host its customers (assumed-shapes §2.4), so the answer is an empty list.

        Raises:
            ConfigError: 401 (credentials refused) or 403 (the login is not a partner admin).
            InvariantError: the body is not `{"orgs": [...]}`.
        """
        try:
            body = self.api.get_json(_path("orgs", partner_domain, "orgs"), permission=PARTNER_ROLE)
        except NotFoundError:
            log.warning("proofpoint.partner_not_on_stack", stack=self.api.base_url,
                        partner_domain=partner_domain)
            return []
        items = _list_of(body, "orgs", "child org list")
        return [parse_org(item, position) for position, item in enumerate(items)]

    def list_users(self, domain: str) -> list[ProofpointUser]:
        """Every user of the org at `domain`.

        Raises:
            NotFoundError: the org is unknown on this stack.
            InvariantError: the body is not `{"users": [...]}` or a user is malformed; a
                recount with a user missing would be wrong, so none is returned.
        """
        body = self.api.get_json(_path("orgs", domain, "users"))
        users = []
        for position, item in enumerate(_list_of(body, "users", f"/orgs/{domain}/users")):
            try:
                p = _UserPayload.model_validate(item)
            except ValidationError as exc:
                raise InvariantError(
                    f"proofpoint: user #{position + 1} of {domain} is malformed: {_reasons(exc)}"
                ) from None
            users.append(ProofpointUser(uid=p.uid, primary_email=p.primary_email, type=p.type,
                                        is_active=p.is_active, is_billable=p.is_billable))
        return users


# ----------------------------------------------------------------- source


class ProofpointApi(Protocol):
    """What `ProofpointSource` needs from a client of one stack; `ProofpointClient` is one."""

    def me(self) -> ProofpointLogin:
        """The login's metadata."""
        ...

    def list_endpoints(self, domain: str) -> list[ProofpointEndpoint]:
        """The stacks `domain` lives on."""
        ...

    def list_child_orgs(self, partner_domain: str) -> list[OrgResult]:
        """The partner's direct children on this stack."""
        ...

    def list_users(self, domain: str) -> list[ProofpointUser]:
        """Every user of one org."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def stack_label(base_url: str) -> str:
    """`us1` for `https://us1.proofpointessentials.com/api/v1`; other URLs as host and path."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if host.endswith(".proofpointessentials.com"):
        return host.split(".", 1)[0]
    return f"{parts.netloc}{parts.path}".rstrip("/")


def _same_url(a: str, b: str) -> bool:
    return a.rstrip("/").lower() == b.rstrip("/").lower()


@dataclass
class _Found:
    """An org to bill and the stack it was read from (the first, if it was on several)."""

    org: ProofpointOrg
    base_url: str


@dataclass
class _Pass:
    """What one `fetch` gathers before it becomes a `Snapshot`."""

    found: dict[int, _Found] = field(default_factory=dict)
    malformed: dict[int, SourceCustomer] = field(default_factory=dict)
    problems: list[SourceProblem] = field(default_factory=list)
    skipped: int = 0


class _Unbillable(Exception):  # noqa: N818  an outcome of the billing rules, not an error
    """This org cannot be billed this pass; the message says why."""


# Fields compared when the same org is read from two stacks.
_COMPARED = ("name", "primary_domain", "is_active", "is_on_trial", "licensing_package",
             "user_licenses", "active_users")


class ProofpointSource:
    """The partner's customer orgs on every configured stack, as a `Snapshot`.

    Rules:
    - customers are the children of type `organization`; partner-type children (a sub-`channel`,
      ...) are skipped, even malformed ones, and not descended into: their customers are their
      own business;
    - an org seen on several stacks (same `eid`) is one customer; the first stack listed wins
      and any disagreement is a problem for that customer;
    - one usage per org with a priced package: its SKU with the count `settings.count` names;
      inactive orgs and (unless `bill_trials`) trials are not billable: quantity 0, a note;
    - a package without a price in `[proofpoint.packages]` is a problem, never a guess.

    Args:
        settings: the `[proofpoint]` section.
        client_factory: builds the client of one stack from its base URL; tests pass fakes.
        max_attempts: attempts per request for the default clients (`check` uses fewer).
    """

    name = "proofpoint"

    def __init__(
        self,
        settings: ProofpointSettings,
        *,
        client_factory: Callable[[str], ProofpointApi] | None = None,
        max_attempts: int = 6,
    ) -> None:
        self.settings = settings
        self._prices = _prices_by_package(settings.packages)
        self._factory = client_factory or self._connect
        self._max_attempts = max_attempts
        self._clients: dict[str, ProofpointApi] = {}

    def _connect(self, base_url: str) -> ProofpointApi:
        return ProofpointClient.connect(
            base_url, self.settings.username, self.settings.password.get_secret_value(),
            requests_per_minute=self.settings.requests_per_minute,
            timeout=self.settings.timeout_s, max_attempts=self._max_attempts,
        )

    def _client(self, base_url: str) -> ProofpointApi:
        """The client of one stack, created on first use."""
        if base_url not in self._clients:
            self._clients[base_url] = self._factory(base_url)
        return self._clients[base_url]

    def close(self) -> None:
        """Close every stack's client."""
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    def __enter__(self) -> ProofpointSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- check

    def check(self) -> str:
        """`GET /me` on every stack, then where Proofpoint says the partner lives.

        Raises:
            ConfigError: credentials refused, a login without a partner role, or a partner
                domain Proofpoint does not know.
        """
        partner = self.settings.partner_domain
        logins = [(url, self._client(url).me()) for url in self.settings.base_urls]
        for base_url, login in logins:
            if not login.is_partner_admin:
                raise ConfigError(
                    f"proofpoint: the login {login.primary_email} ({login.type or 'no type'}) "
                    f"on {stack_label(base_url)} has no partner role, so it cannot list customer "
                    "orgs; Channel Admin is the least privileged role that works"
                )
        login = logins[0][1]
        stacks = ", ".join(stack_label(u) for u in self.settings.base_urls)
        text = f"as {login.primary_email} ({login.type}) for {partner} on {stacks}"
        missing = self._unconfigured_stacks()
        if missing:
            log.warning("proofpoint.stack_not_configured", partner_domain=partner, stacks=missing)
            text += f"; {partner} also has orgs on {', '.join(missing)}, not in proofpoint.base_url"
        return text

    def _unconfigured_stacks(self) -> list[str]:
        partner = self.settings.partner_domain
        try:
            endpoints = self._client(self.settings.base_urls[0]).list_endpoints(partner)
        except NotFoundError:
            raise ConfigError(
                f"proofpoint: partner domain {partner!r} is unknown to Proofpoint "
                "(GET /endpoints answered 404): check proofpoint.partner_domain"
            ) from None
        configured = self.settings.base_urls
        return [
            e.stack or stack_label(e.url) for e in endpoints
            if e.url and not any(_same_url(e.url, url) for url in configured)
        ]

    # -- fetch

    def fetch(self) -> Snapshot:
        """Read the child orgs on every stack and turn them into customers, products, usages.

        Raises:
            ConfigError: credentials refused or the login is not a partner admin.
            TransientError: a stack stayed unreachable; a partial snapshot would look like
                customers that left, so none is returned.
            InvariantError: a child org without a readable eid or type, for the same reason.
        """
        found = _Pass()
        for base_url in self.settings.base_urls:
            orgs = self._client(base_url).list_child_orgs(self.settings.partner_domain)
            for item in orgs:
                self._take(found, item, base_url)
        customers, usages, problems = [], [], list(found.problems)
        for entry in found.found.values():
            org = entry.org
            customers.append(SourceCustomer(id=str(org.eid), name=org.name, domains=org.domains))
            try:
                usage = self._usage(org, entry.base_url)
            except _Unbillable as why:
                problems.append(SourceProblem(message=str(why), customer_id=str(org.eid),
                                              customer=org.name))
                continue
            if usage is not None:
                usages.append(usage)
        customers += [c for eid, c in found.malformed.items() if eid not in found.found]
        products = self._products({u.sku for u in usages})
        log.info("proofpoint.fetched", stacks=len(self.settings.base_urls),
                 customers=len(customers), usages=len(usages), problems=len(problems),
                 skipped=found.skipped)
        return Snapshot(vendor=self.name, customers=tuple(customers), products=products,
                        usages=tuple(usages), problems=tuple(problems))

    def _take(self, found: _Pass, item: OrgResult, base_url: str) -> None:
        stack = stack_label(base_url)
        if item.type is not None and item.type != CUSTOMER_TYPE:
            # A partner below the partner: its customers are its own business, whatever its
            # fields look like.
            found.skipped += 1
            log.info("proofpoint.child_skipped", eid=item.eid, name=item.name, type=item.type,
                     stack=stack)
            return
        if isinstance(item, MalformedOrg):
            label = item.name or item.primary_domain or f"#{item.position + 1}"
            message = f"org {label} on {stack} is malformed: {item.reason}"
            if item.eid is None:
                # Whose count is missing cannot be told, and a customer missing from the list
                # would be detached and billed 0: no part of this list can be trusted.
                raise InvariantError(
                    f"proofpoint: {message}; without its eid the daemon cannot tell whose org "
                    "it is, so nothing is synced until Proofpoint lists every org whole")
            found.problems.append(SourceProblem(message, customer_id=str(item.eid),
                                                customer=item.name))
            # Still a customer of the partner: its mapping must not turn Detached.
            found.malformed.setdefault(item.eid, SourceCustomer(
                id=str(item.eid), name=item.name or item.primary_domain or f"org {item.eid}",
                domains=(item.primary_domain,) if item.primary_domain else ()))
            return
        first = found.found.get(item.eid)
        if first is None:
            found.found[item.eid] = _Found(item, base_url)
            return
        differ = [f for f in _COMPARED if getattr(first.org, f) != getattr(item, f)]
        if set(first.org.domains) != set(item.domains):
            differ.append("domains")
        if differ and first.base_url == base_url:
            found.problems.append(SourceProblem(
                message=(f"org {item.eid} is listed twice on {stack} with different "
                         f"{', '.join(differ)}: nothing is billed for it until they agree"),
                customer_id=str(item.eid), customer=first.org.name,
            ))
        elif differ:
            first_stack = stack_label(first.base_url)
            found.problems.append(SourceProblem(
                message=(f"org {item.eid} is on {first_stack} and {stack} with different "
                         f"{', '.join(differ)}; {first_stack}'s data is kept"),
                customer_id=str(item.eid), customer=first.org.name,
            ))

    def _usage(self, org: ProofpointOrg, base_url: str) -> Usage | None:
        """The org's usage, None when there is nothing to bill and nothing wrong."""
        customer_id = str(org.eid)
        if org.is_active is None:
            raise _Unbillable("org has no is_active flag: cannot tell whether it is billable")
        package = org.licensing_package
        price = self._prices.get(package) if package else None
        if not org.is_active:
            if package is None or price is None:
                return None  # nothing was ever billed for it, so nothing is missing
            return Usage(customer_id, sku_for_package(package), 0, billable=False,
                         note="inactive")
        if package is None:
            raise _Unbillable("org has no licensing_package")
        if price is None:
            raise _Unbillable(
                f"package '{package}' has no price in [proofpoint.packages.{package}]")
        sku = sku_for_package(package)
        if not self.settings.bill_trials:
            if org.is_on_trial is None:
                raise _Unbillable("org has no is_on_trial flag: cannot tell whether it is a trial")
            if org.is_on_trial:
                return Usage(customer_id, sku, 0, billable=False, note="on trial")
        quantity, note = self._count(org, base_url)
        if org.is_on_trial and self.settings.bill_trials:
            note = "; ".join(n for n in ("on trial, billed (bill_trials = true)", note) if n)
        return Usage(customer_id, sku, quantity, note=note)

    def _count(self, org: ProofpointOrg, base_url: str) -> tuple[int, str | None]:
        mode = self.settings.count
        if mode == "billable_users":
            try:
                users = self._client(base_url).list_users(org.primary_domain)
            except (RejectedError, InvariantError) as exc:
                raise _Unbillable(f"cannot recount billable users: {exc}") from None
            billable = sum(1 for u in users if u.takes_a_licence)
            note = None
            if org.active_users is not None and org.active_users != billable:
                # vendor-apis.md §A.9: the two may differ; the operator asked for the recount.
                note = (f"{billable} billable users; Proofpoint's active_users says "
                        f"{org.active_users}")
            return billable, note
        value = org.active_users if mode == "active_users" else org.user_licenses
        if value is None:
            raise _Unbillable(f"org has no {mode}")
        return value, None

    def _products(self, skus: set[str]) -> tuple[SourceProduct, ...]:
        by_sku = {sku_for_package(key): price for key, price in self._prices.items()}
        return tuple(
            SourceProduct(sku=sku, name=by_sku[sku].name, cost=by_sku[sku].cost,
                          retail=by_sku[sku].retail)
            for sku in sorted(skus)
        )


def _prices_by_package(packages: Mapping[str, PackagePrice]) -> dict[str, PackagePrice]:
    """`[proofpoint.packages]` keyed by normalised package key; two spellings of one package
    would make the price ambiguous, so that is a config error."""
    prices: dict[str, PackagePrice] = {}
    spelled: dict[str, str] = {}
    for raw, price in packages.items():
        key = normalise_package(raw)
        if not key:
            raise ConfigError(f"proofpoint.packages: {raw!r} is not a package name")
        if key in prices:
            raise ConfigError(
                f"proofpoint.packages: {spelled[key]!r} and {raw!r} both name package '{key}'")
        prices[key], spelled[key] = price, raw
    return prices

