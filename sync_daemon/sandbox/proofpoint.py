"""Sandbox Proofpoint Essentials: a partner hierarchy in memory, one HTTP server per stack.

Faithful to `reference/vendor-apis.md` §A and `reference/assumed-shapes.md` §2.
"""

from __future__ import annotations

import hmac
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from types import TracebackType
from typing import Any, Literal, Self, get_args
from urllib.parse import unquote

from sync_daemon.sandbox.http import (
    Clock,
    Handler,
    Request,
    Response,
    SandboxServer,
    SlidingWindowLimiter,
    json_response,
    text_response,
)

OrgType = Literal["oem_partner", "strategic_partner", "channel", "organization"]
UserType = Literal[
    "oem_partner_admin",
    "strategic_partner_admin",
    "channel_admin",
    "organization_admin",
    "end_user",
    "silent_user",
    "functional_account",
]
# vendor-apis §A.1 [H]; au1 is unconfirmed and left out.
STACKS = ("us1", "us2", "us3", "us4", "us5", "eu1")
# assumed-shapes §2.5
PACKAGES = (
    "beginner", "business", "business_plus", "advanced", "advanced_plus", "professional",
    "professional_plus",
)  # fmt: skip
_ADMIN_OF: dict[OrgType, UserType] = {
    "oem_partner": "oem_partner_admin",
    "strategic_partner": "strategic_partner_admin",
    "channel": "channel_admin",
    "organization": "organization_admin",
}
_UNCOUNTED: frozenset[UserType] = frozenset({"functional_account", "silent_user"})
_NUMERIC = re.compile(r"[0-9]+")


@dataclass(slots=True)
class Domain:
    """One mail domain of an org (vendor-apis §A.5)."""

    name: str
    is_active: bool = True
    is_relay: bool = False
    destination: str = ""
    failovers: list[str] = field(default_factory=list)


@dataclass(slots=True)
class User:
    """One user of an org; a login is a user with a password."""

    uid: int
    org_eid: int
    primary_email: str
    firstname: str
    surname: str
    type: UserType = "end_user"
    is_active: bool = True
    is_billable: bool = True
    alias_emails: list[str] = field(default_factory=list)
    read_only_user: bool = False

    @property
    def counts(self) -> bool:
        """Whether the user is an active user for billing (assumed-shapes §2.6)."""
        return self.is_active and self.is_billable and self.type not in _UNCOUNTED


@dataclass(slots=True)
class Org:
    """A partner or end-customer org; `domains[0]` is the primary domain.

    An end customer lives on `stack`; a partner is also reachable on every stack that hosts
    one of its descendants (assumed-shapes §2.4).
    """

    eid: int
    name: str
    type: OrgType
    parent_eid: int | None
    stack: str
    domains: list[Domain]
    licensing_package: str | None = None
    user_licenses: int | str = 0
    pinned_active_users: int | None = None
    is_on_trial: bool = False
    when_renewal: date | None = None
    is_active: bool = True
    is_beginner_plus: bool = False
    country: str | None = "US"
    users: list[User] = field(default_factory=list)

    @property
    def primary_domain(self) -> str:
        """The domain the org is addressed by in URLs."""
        return self.domains[0].name

    @property
    def is_partner(self) -> bool:
        """Any org type above an end customer."""
        return self.type != "organization"

    @property
    def active_users(self) -> int:
        """The pinned count if set, else a recount of the users (assumed-shapes §2.6)."""
        if self.pinned_active_users is not None:
            return self.pinned_active_users
        return sum(user.counts for user in self.users)


class ProofpointState:
    """A partner hierarchy in memory: orgs, their domains and users, and logins.

    Seeding methods validate like the vendor would and raise `ValueError` (bad value) or
    `KeyError` (unknown domain). Hold `lock` to read several things consistently.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._orgs: dict[int, Org] = {}
        self._by_domain: dict[str, Org] = {}
        self._users: dict[str, User] = {}
        self._passwords: dict[str, str] = {}
        self._next_eid = 100001
        self._next_uid = 700001

    # -- seeding ---------------------------------------------------------------------------

    def add_partner(
        self,
        name: str,
        domain: str,
        *,
        type: OrgType = "channel",  # noqa: A002  the vendor's field name
        parent: str | None = None,
        stack: str = "us1",
        extra_domains: Iterable[str] = (),
    ) -> Org:
        """Create a partner org; `stack` is its home, where it answers even without customers."""
        if type not in get_args(OrgType) or type == "organization":
            raise ValueError(f"{type!r} is not a partner type; use add_org() for an end customer")
        return self._add(name, type, [domain, *extra_domains], parent=parent, stack=stack)

    def add_org(
        self,
        name: str,
        domain: str,
        *,
        parent: str,
        stack: str,
        package: str = "business",
        user_licenses: int | str = 0,
        is_on_trial: bool = False,
        when_renewal: date | None = None,
        extra_domains: Iterable[str] = (),
        is_active: bool = True,
    ) -> Org:
        """Create an end-customer org under partner `parent`, living on `stack` only.

        `user_licenses` is served as given: an int or a numeric string (assumed-shapes §2.5).
        """
        _check_package(package)
        _check_licenses(user_licenses)
        with self.lock:
            org = self._add(
                name, "organization", [domain, *extra_domains], parent=parent, stack=stack
            )
            org.licensing_package = package
            org.user_licenses = user_licenses
            org.is_on_trial = is_on_trial
            org.when_renewal = when_renewal
            org.is_active = is_active
            return org

    def add_domain(self, org_domain: str, name: str, *, is_relay: bool = False) -> Domain:
        """Add a secondary domain to the org that owns `org_domain`."""
        with self.lock:
            org = self.org(org_domain)
            key = name.lower()
            if key in self._by_domain:
                raise ValueError(f"domain {name} already belongs to an org")
            domain = Domain(key, is_relay=is_relay, destination=f"mail.{key}")
            org.domains.append(domain)
            self._by_domain[key] = org
            return domain

    def add_user(
        self,
        org_domain: str,
        email: str,
        *,
        firstname: str = "",
        surname: str = "",
        type: UserType = "end_user",  # noqa: A002  the vendor's field name
        is_active: bool = True,
        is_billable: bool = True,
        alias_emails: Iterable[str] = (),
        read_only: bool = False,
    ) -> User:
        """Add a user to the org that owns `org_domain`; e-mails are unique across orgs."""
        if type not in get_args(UserType):
            raise ValueError(f"unknown user type {type!r}")
        with self.lock:
            org = self.org(org_domain)
            key = email.lower()
            if key in self._users:
                raise ValueError(f"user {email} already exists")
            user = User(
                self._next_uid, org.eid, key, firstname, surname, type, is_active, is_billable,
                list(alias_emails), read_only,
            )  # fmt: skip
            self._next_uid += 1
            org.users.append(user)
            self._users[key] = user
            return user

    def add_login(
        self,
        org_domain: str,
        email: str,
        password: str,
        *,
        type: UserType | None = None,  # noqa: A002  the vendor's field name
        read_only: bool = False,
        firstname: str = "API",
        surname: str = "Admin",
    ) -> User:
        """Add a user that can authenticate; `type` defaults to the org's admin role."""
        with self.lock:
            role = type or _ADMIN_OF[self.org(org_domain).type]
            user = self.add_user(
                org_domain, email, firstname=firstname, surname=surname, type=role,
                read_only=read_only,
            )  # fmt: skip
            self._passwords[user.primary_email] = password
            return user

    def set_package(self, domain: str, package: str) -> Org:
        """Move an end customer to another package."""
        _check_package(package)
        with self.lock:
            org = self.org(domain)
            org.licensing_package = package
            return org

    def set_user_licenses(self, domain: str, count: int | str) -> Org:
        """Set the partner-set licence count, as an int or a numeric string."""
        _check_licenses(count)
        with self.lock:
            org = self.org(domain)
            org.user_licenses = count
            return org

    def set_active_users(self, domain: str, count: int | None) -> Org:
        """Pin `active_users` so it disagrees with a recount; None goes back to the recount."""
        with self.lock:
            org = self.org(domain)
            org.pinned_active_users = count
            return org

    # -- queries ---------------------------------------------------------------------------

    def org(self, domain: str) -> Org:
        """The org owning `domain` (any of its domains, any case); KeyError if none."""
        with self.lock:
            found = self._by_domain.get(domain.lower())
        if found is None:
            raise KeyError(f"no org has the domain {domain}")
        return found

    def find(self, domain: str) -> Org | None:
        """Like `org`, but None for an unknown domain."""
        with self.lock:
            return self._by_domain.get(domain.lower())

    def orgs(self) -> list[Org]:
        """Every org, partners included, in creation order."""
        with self.lock:
            return list(self._orgs.values())

    def parent(self, org: Org) -> Org | None:
        """The org directly above `org`."""
        return self._orgs.get(org.parent_eid) if org.parent_eid is not None else None

    def children(self, org: Org) -> list[Org]:
        """The orgs directly below `org`, on every stack."""
        with self.lock:
            return [child for child in self._orgs.values() if child.parent_eid == org.eid]

    def stacks_of(self, org: Org) -> list[str]:
        """The stacks on which `org` answers (assumed-shapes §2.4)."""
        if not org.is_partner:
            return [org.stack]
        with self.lock:
            found = {org.stack}
            for child in self.children(org):
                found.update(self.stacks_of(child))
            return sorted(found)

    def stacks(self) -> list[str]:
        """Every stack some org lives on."""
        with self.lock:
            return sorted({org.stack for org in self._orgs.values()})

    def is_within(self, org: Org, ancestor: Org) -> bool:
        """Whether `org` is `ancestor` or below it."""
        with self.lock:
            current: Org | None = org
            while current is not None and current.eid != ancestor.eid:
                current = self.parent(current)
            return current is not None

    def org_of(self, user: User) -> Org:
        """The org a user belongs to."""
        return self._orgs[user.org_eid]

    def authenticate(self, email: str | None, password: str | None) -> User | None:
        """The active login with these credentials, or None."""
        with self.lock:
            user = self._users.get((email or "").lower())
            stored = self._passwords.get(user.primary_email) if user else None
        if user is None or stored is None or password is None or not user.is_active:
            return None
        return user if hmac.compare_digest(stored.encode(), password.encode()) else None

    def _add(
        self,
        name: str,
        type: OrgType,  # noqa: A002  the vendor's field name
        domains: list[str],
        *,
        parent: str | None,
        stack: str,
    ) -> Org:
        if stack not in STACKS:
            raise ValueError(f"unknown stack {stack!r}; known: {', '.join(STACKS)}")
        with self.lock:
            above = self.org(parent) if parent is not None else None
            if above is not None and not above.is_partner:
                raise ValueError(f"{parent} is an end customer and cannot have child orgs")
            if type == "organization" and above is None:
                raise ValueError("an end-customer org needs a partner parent")
            names = [domain.lower() for domain in domains]
            if len(set(names)) < len(names) or any(n in self._by_domain for n in names):
                raise ValueError(f"a domain of {names} is repeated or already belongs to an org")
            primary = Domain(names[0], destination=f"mail.{names[0]}")
            org = Org(self._next_eid, name, type, above.eid if above else None, stack, [primary])
            self._next_eid += 1
            self._orgs[org.eid] = org
            self._by_domain[primary.name] = org
            for extra in names[1:]:
                self.add_domain(primary.name, extra)
            return org


def _check_package(package: str) -> None:
    if package not in PACKAGES:
        raise ValueError(f"unknown package {package!r}; known: {', '.join(PACKAGES)}")


def _check_licenses(count: int | str) -> None:
    text = count if isinstance(count, str) else str(count)
    if isinstance(count, bool) or not _NUMERIC.fullmatch(text):
        raise ValueError(
            f"user_licenses must be a whole number (int or numeric string), not {count!r}"
        )


# -- HTTP ------------------------------------------------------------------------------------


_MESSAGES = {401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}


class _ApiError(Exception):
    """Ends a request with Proofpoint's error body (assumed-shapes §2.1)."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status

    def response(self) -> Response:
        return json_response({"message": _MESSAGES[self.status]}, self.status)


def _domain_view(domain: Domain) -> dict[str, Any]:
    return {
        "name": domain.name, "is_active": domain.is_active, "is_relay": domain.is_relay,
        "destination": domain.destination, "failovers": list(domain.failovers),
    }  # fmt: skip


def _org_view(org: Org) -> dict[str, Any]:
    """The org object with every field of assumed-shapes §2.5."""
    return {
        "name": org.name, "primary_domain": org.primary_domain, "eid": org.eid,
        "type": org.type, "is_active": org.is_active, "licensing_package": org.licensing_package,
        "user_licenses": org.user_licenses, "active_users": org.active_users,
        "is_on_trial": org.is_on_trial,
        "when_renewal": org.when_renewal.isoformat() if org.when_renewal else None,
        "is_beginner_plus": org.is_beginner_plus, "is_beginner_plus_enabled": False,
        "domains": [_domain_view(d) for d in org.domains],
        "www": None, "address": None, "postcode": None, "stateprov": None,
        "country": org.country, "phone": None, "outgoing_servers": [],
        "safe_list_senders": [], "block_list_senders": [],
        "account_template_id": None, "send_welcome_email": False,
    }  # fmt: skip


def _user_view(user: User) -> dict[str, Any]:
    return {
        "uid": user.uid, "primary_email": user.primary_email, "firstname": user.firstname,
        "surname": user.surname, "type": user.type, "is_active": user.is_active,
        "is_billable": user.is_billable, "alias_emails": list(user.alias_emails),
        "safe_list_senders": [], "block_list_senders": [], "read_only_user": user.read_only_user,
    }  # fmt: skip


class _StackApi:
    """The read-only `/api/v1` routes as one stack answers them."""

    def __init__(self, state: ProofpointState, stack: str, urls: Mapping[str, str]) -> None:
        self.state = state
        self.stack = stack
        self.urls = urls

    def routes(self) -> list[tuple[str, Handler]]:
        org = "/orgs/(?P<domain>[^/]+)"
        return [
            ("/me", self.me),
            ("/endpoints/(?P<domain>[^/]+)", self.endpoints),
            (org, self.org),
            (f"{org}/orgs", self.children),
            (f"{org}/users", self.users),
            (f"{org}/licensing", self.licensing),
        ]

    def me(self, request: Request) -> Response:
        login = self._login(request)
        org = self.state.org_of(login)
        return json_response({
            "uid": login.uid, "primary_email": login.primary_email,
            "firstname": login.firstname, "surname": login.surname, "type": login.type,
            "is_active": login.is_active, "read_only_user": login.read_only_user,
            "is_admin": _is_admin(login), "is_partner_admin": org.is_partner,
            "entity_type": org.type, "entity_primary_domain": org.primary_domain,
            "eid": org.eid,
        })  # fmt: skip

    def endpoints(self, request: Request) -> Response:
        """Any stack answers for any known domain, whoever asks (assumed-shapes §2.3)."""
        self._login(request)
        org = self.state.find(_domain(request))
        if org is None:
            raise _ApiError(404)
        found = [{"stack": s, "url": _url(self.urls, s)} for s in self.state.stacks_of(org)]
        return json_response({"endpoints": found})

    def org(self, request: Request) -> Response:
        return json_response(_org_view(self._visible(request)))

    def children(self, request: Request) -> Response:
        """Direct children on this stack only, never the org itself (assumed-shapes §2.4)."""
        login = self._login(request)
        if not self.state.org_of(login).is_partner:
            raise _ApiError(403)
        parent = self._visible(request)
        orgs = [c for c in self.state.children(parent) if self.stack in self.state.stacks_of(c)]
        return json_response({"orgs": [_org_view(c) for c in orgs]})

    def users(self, request: Request) -> Response:
        return json_response({"users": [_user_view(u) for u in self._visible(request).users]})

    def licensing(self, request: Request) -> Response:
        org = self._visible(request)
        return json_response({
            "license_count": org.user_licenses, "package": org.licensing_package,
            "is_on_trial": org.is_on_trial, "is_beginner_plus": org.is_beginner_plus,
        })  # fmt: skip

    def not_found(self, request: Request) -> Response:
        self._login(request)
        raise _ApiError(404)

    def _login(self, request: Request) -> User:
        login = self.state.authenticate(request.header("X-User"), request.header("X-Password"))
        if login is None:
            raise _ApiError(401)
        return login

    def _visible(self, request: Request) -> Org:
        """The org in the path: 404 if unknown or on another stack, 403 if out of reach."""
        login = self._login(request)
        org = self.state.find(_domain(request))
        if org is None or self.stack not in self.state.stacks_of(org):
            raise _ApiError(404)
        # Only admin roles manage orgs, and only within their own hierarchy (vendor-apis §A.2).
        if not _is_admin(login) or not self.state.is_within(org, self.state.org_of(login)):
            raise _ApiError(403)
        return org


def _domain(request: Request) -> str:
    return unquote(request.path_params["domain"])


def _is_admin(user: User) -> bool:
    return user.type.endswith("_admin")


def _url(urls: Mapping[str, str], stack: str) -> str:
    # A stack this sandbox does not serve gets an address that can never resolve (RFC 2606),
    # so a client can never send sandbox credentials to the real service.
    return urls.get(stack, f"http://{stack}.stack-not-served.invalid/api/v1")


class ProofpointStackServer(SandboxServer):
    """One Proofpoint stack (e.g. `us1`) over HTTP; its own request log, faults and limiter."""

    def __init__(
        self,
        state: ProofpointState,
        stack: str,
        urls: Mapping[str, str],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        limiter: SlidingWindowLimiter | None = None,
    ) -> None:
        super().__init__(host=host, port=port)
        self.state = state
        self.stack = stack
        self.limiter = limiter
        api = _StackApi(state, stack, urls)
        for path, handler in api.routes():
            self.router.add("GET", f"/api/v1{path}", handler)
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            self.router.add(method, ".*", api.not_found)

    @property
    def api_url(self) -> str:
        """`url` plus `/api/v1`, the base a Proofpoint client takes for this stack."""
        return f"{self.url}/api/v1"

    def handle(self, request: Request) -> Response:
        """Rate-limit per client IP if configured, then route under the state's lock."""
        if self.limiter is not None and not self.limiter.allow(request.client_ip):
            # No Retry-After and no JSON: vendor-apis §A.8, assumed-shapes §2.1.
            return text_response("Too Many Requests", 429)
        with self.state.lock:
            try:
                return super().handle(request)
            except _ApiError as error:
                return error.response()


class ProofpointSandbox:
    """Several Proofpoint stacks served from one process over one shared `ProofpointState`.

    Args:
        state: the hierarchy to serve (shared, not copied); an empty one by default.
        stacks: stack names to serve; by default every stack the state uses (or `us1`).
        ports: fixed port per stack; others pick a free port.
        requests_per_minute: a per-stack, per-client-IP limit; None (default) for no limit.
        clock: monotonic seconds for the rate limiter; tests inject a fake.
    """

    def __init__(
        self,
        state: ProofpointState | None = None,
        *,
        stacks: Iterable[str] | None = None,
        host: str = "127.0.0.1",
        ports: Mapping[str, int] | None = None,
        requests_per_minute: int | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.state = state if state is not None else ProofpointState()
        names = list(stacks) if stacks is not None else self.state.stacks() or ["us1"]
        self._urls: dict[str, str] = {}
        self.stacks: dict[str, ProofpointStackServer] = {}
        for name in names:
            limiter = None
            if requests_per_minute is not None:
                limiter = SlidingWindowLimiter(requests_per_minute, 60.0, clock)
            self.stacks[name] = ProofpointStackServer(
                self.state, name, self._urls, host=host, port=(ports or {}).get(name, 0),
                limiter=limiter,
            )  # fmt: skip

    def stack_url(self, stack: str) -> str:
        """The API base of a served stack, e.g. `http://127.0.0.1:PORT/api/v1`."""
        return self.stacks[stack].api_url

    def start(self) -> Self:
        """Start every stack; refuses a state with orgs on a stack that is not served."""
        missing = sorted(set(self.state.stacks()) - set(self.stacks))
        if missing:
            raise ValueError(f"the state has orgs on stacks not served: {', '.join(missing)}")
        try:
            for name, server in self.stacks.items():
                server.start()
                self._urls[name] = server.api_url
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every stack, all at once (each waits for its serve loop); safe to call twice."""
        threads = [threading.Thread(target=server.stop) for server in self.stacks.values()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self._urls.clear()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
