"""End-to-end fixtures: sandbox servers on 127.0.0.1 and configs pointing the CLI at them.

`make_config` + `syncro` serve the demo Syncro account (for `check`). `world` (and
`open_world()` for module-scoped scenarios) serves a small, empty Syncro account and a
Proofpoint partner on two stacks that each test seeds with the few customers, orgs and
mappings it needs, plus helpers that read back what Syncro holds and what was sent to it.
`CloudiqWorld` (`open_cloudiq_world()`, `cloudiq_concurrently()`) does the same for a Crayon
Cloud-iQ partner account with a small price list (`CLOUDIQ_PRICES`), billed month by month.
"""

from __future__ import annotations

import calendar
import json
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import pytest

from sync_daemon.sandbox import (
    DEFAULT_TOKEN,
    DEMO_PARTNER_DOMAIN,
    DEMO_PROOFPOINT_PASSWORD,
    DEMO_PROOFPOINT_USER,
    ProofpointSandbox,
    ProofpointState,
    SyncroSandbox,
    SyncroState,
    demo_proofpoint_state,
    demo_syncro_state,
)
from sync_daemon.sandbox.cloudiq import (
    BillingStatement,
    CloudiqSandbox,
    CloudiqState,
    CustomerTenant,
    Subscription,
    Term,
)
from sync_daemon.sandbox.http import Request, Response
from sync_daemon.sandbox.proofpoint import Org
from sync_daemon.state import (
    StateStore,
    StateTransaction,
    VendorCustomer,
    VendorCustomerStatus,
)
from tests.support.cli import Result, run_cli, write_config

MakeConfig = Callable[..., Path]
Record = dict[str, Any]
SyncroSnapshot = tuple[list[Record], list[Record]]  # every product, every schedule line


@pytest.fixture
def syncro() -> Iterator[SyncroSandbox]:
    with SyncroSandbox(demo_syncro_state(), requests_per_minute=6000) as sandbox:
        yield sandbox


@pytest.fixture
def make_config(tmp_path: Path, syncro: SyncroSandbox) -> MakeConfig:
    """A config for the sandbox; keyword `section={...}` entries replace or add keys."""

    def make(**overrides: dict[str, Any]) -> Path:
        sections: dict[str, dict[str, Any]] = {
            "state": {"url": f"sqlite:///{tmp_path / 'state.db'}"},
            "log": {"format": "json", "level": "info"},
            "syncro": {"base_url": syncro.api_url, "api_token": DEFAULT_TOKEN,
                       "requests_per_minute": 6000},
        }
        for section, values in overrides.items():
            sections.setdefault(section, {}).update(values)
        return write_config(tmp_path / "sync-daemon.toml", sections)

    return make


# -- a small world: an MSP's Syncro account and its Proofpoint partner account ---------------

VENDOR = "proofpoint"
PARTNER_DOMAIN = "northgate-it.example"
PROOFPOINT_USER = f"api-billing@{PARTNER_DOMAIN}"
PROOFPOINT_PASSWORD = "pp-sandbox-password"  # a fake password for a local fake server
STACKS = ("us1", "us2")


# `[proofpoint.packages.<key>]`: (vendor product name, cost, retail). Amounts like 2.05
# (204.999... cents as a float) make any float or truncation on the way to cents show.
PACKAGES: dict[str, tuple[str, Decimal, Decimal]] = {
    "business": ("Proofpoint Essentials Business", Decimal("1.55"), Decimal("3.10")),
    "business_plus": ("Proofpoint Essentials Business+", Decimal("2.05"), Decimal("4.15")),
    "advanced": ("Proofpoint Essentials Advanced", Decimal("2.60"), Decimal("5.20")),
    "professional": ("Proofpoint Essentials Professional", Decimal("3.45"), Decimal("6.90")),
}
MSP_PRODUCT = "Managed Services - Per Device"
MSP_RETAIL_CENTS = 4500


@dataclass(frozen=True)
class Customer:
    """A seeded Syncro customer and its recurring invoices (schedules), in creation order."""

    id: int
    name: str
    schedule_ids: tuple[int, ...]

    @property
    def schedule_id(self) -> int:
        """The customer's first (usually only) recurring invoice."""
        return self.schedule_ids[0]


@dataclass(frozen=True)
class Line:
    """A Syncro schedule line as the sandbox holds it, money in currency units."""

    id: int
    schedule_id: int
    product_id: int | None
    product: str | None  # the product's current name; None when the product no longer exists
    name: str | None
    quantity: Decimal
    retail: Decimal
    cost: Decimal
    taxable: bool


@dataclass(frozen=True)
class Sync:
    """One `sync --format json` run: exit code, the parsed summary and the raw output."""

    result: Result
    summary: dict[str, Any]

    @property
    def code(self) -> int:
        """The exit code."""
        return self.result.code

    def changes(self, action: str | None = None) -> list[dict[str, Any]]:
        """The summary's change rows, optionally only one action (`line.created`, ...)."""
        rows: list[dict[str, Any]] = self.summary["changes"]
        return [r for r in rows if action is None or r["action"] == action]

    def notices(self, level: str, kind: str | None = None) -> list[dict[str, Any]]:
        """`warnings` or `errors` of the summary, optionally only one kind."""
        rows: list[dict[str, Any]] = self.summary[level]
        return [r for r in rows if kind is None or r["kind"] == kind]


@dataclass(kw_only=True)
class SyncroWorld:
    """What every test world shares: the Syncro sandbox, a state database and config files in
    `directory`, the real CLI for one vendor, and read-back helpers for Syncro and the state.
    """

    vendor: ClassVar[str]
    syncro: SyncroSandbox
    directory: Path
    msp_product_id: int = 0
    _configs: dict[str, Path] = field(default_factory=dict)

    @property
    def state_url(self) -> str:
        """The SQLite URL every config of this world shares."""
        return f"sqlite:///{self.directory / 'state.db'}"

    def config(self, name: str = "sync-daemon.toml") -> Path:
        """Write the world's default config; worlds add their vendor's section."""
        raise NotImplementedError

    def _write(self, name: str, sections: dict[str, dict[str, Any]],
               overrides: Mapping[str, Mapping[str, Any]]) -> Path:
        for section, values in overrides.items():
            sections.setdefault(section, {}).update(values)
        path = write_config(self.directory / name, sections)
        self._configs[name] = path
        return path

    def cli(self, *args: str, config: Path | None = None) -> Result:
        """`sync-daemon --config CONFIG ARGS...` (the default config unless one is given)."""
        path = config or self._configs.get("sync-daemon.toml") or self.config()
        return run_cli("--config", str(path), *args)

    def cli_many(self, *commands: Sequence[str], config: Path | None = None) -> list[Result]:
        """Several read-only commands at once (each is mostly interpreter start-up)."""
        with ThreadPoolExecutor(max_workers=len(commands)) as pool:
            return list(pool.map(lambda args: self.cli(*args, config=config), commands))

    def sync(self, *args: str, config: Path | None = None) -> Sync:
        """`sync --vendor <vendor> --format json ARGS...`, parsed."""
        result = self.cli("sync", "--vendor", self.vendor, "--format", "json", *args,
                          config=config)
        return Sync(result, parse_json(result))

    @contextmanager
    def store(self) -> Iterator[StateTransaction]:
        """One transaction on the world's state database (migrated on first use)."""
        with StateStore.open(self.state_url) as store, store.transaction() as tx:
            yield tx

    def lines(self, schedule_id: int) -> list[Line]:
        """Every line of a recurring invoice, as Syncro holds it now."""
        state = self.syncro.state
        with state.lock:
            return [_line(view, state) for view in state.lines.all(schedule_id)]

    def products(self, name: str | None = None) -> list[Record]:
        """Syncro products (disabled ones included), optionally only those with this name."""
        return [p for p in self.syncro.state.products.all() if name is None or p["name"] == name]

    def writes(self) -> int:
        """POST, PUT and DELETE requests Syncro received since the log was last cleared."""
        return sum(self.syncro.requests.count(method=m) for m in ("POST", "PUT", "DELETE"))

    def snapshot(self) -> SyncroSnapshot:
        """Every product and every line, to prove nothing changed."""
        state = self.syncro.state
        with state.lock:
            return state.products.all(), state.lines.all()


@dataclass(kw_only=True)
class World(SyncroWorld):
    """Both sandboxes, a state database and config files in `directory`, and helpers.

    Seeding goes straight into the sandboxes' state (as an MSP's existing data would be there),
    mapping rows can be seeded straight into the state database (so a sync test does not pay a
    CLI call per mapping); everything under test runs through the real CLI.
    """

    vendor: ClassVar[str] = VENDOR
    proofpoint: ProofpointSandbox

    # -- config and CLI ----------------------------------------------------------------------

    def config(self, name: str = "sync-daemon.toml", *,
               packages: Mapping[str, tuple[str, Decimal, Decimal]] = PACKAGES,
               **overrides: Mapping[str, Any]) -> Path:
        """Write a config (`[section]` overrides as keyword arguments) and return its path."""
        sections: dict[str, dict[str, Any]] = {
            "state": {"url": self.state_url},
            "log": {"format": "json", "level": "info"},
            "syncro": {"base_url": self.syncro.api_url, "api_token": DEFAULT_TOKEN,
                       "requests_per_minute": 6000},
            "proofpoint": {
                "base_url": [self.proofpoint.stack_url(s) for s in STACKS],
                "username": PROOFPOINT_USER, "password": PROOFPOINT_PASSWORD,
                "partner_domain": PARTNER_DOMAIN, "count": "active_users",
                "bill_trials": False, "requests_per_minute": 6000,
            },
        }
        for key, (product, cost, retail) in packages.items():
            sections[f"proofpoint.packages.{key}"] = {
                "name": product, "cost": str(cost), "retail": str(retail)}
        return self._write(name, sections, overrides)

    def history(self, config: Path | None = None) -> list[dict[str, Any]]:
        """`history --format json` (the audit log, newest first)."""
        result = self.cli("history", "--vendor", VENDOR, "--limit", "500", "--format", "json",
                          config=config)
        assert result.code == 0, result.stderr
        rows: list[dict[str, Any]] = parse_json(result)
        return rows

    # -- seeding -----------------------------------------------------------------------------

    def customer(self, name: str, *, schedules: Sequence[str] = ("Monthly Services",),
                 email: str | None = None, devices: int | None = 12,
                 paused: Sequence[str] = ()) -> Customer:
        """A Syncro customer with recurring invoices; each gets one line of the MSP's own
        per-device service (`devices` of them) unless `devices` is None."""
        state = self.syncro.state
        customer = state.customers.add(business_name=name, email=email,
                                       firstname="Pat", lastname="Owner")
        ids = []
        for schedule_name in schedules:
            schedule = state.schedules.add(customer["id"], schedule_name,
                                           paused=schedule_name in paused)
            ids.append(int(schedule["id"]))
            if devices is not None:
                state.lines.add(schedule["id"], product_id=self.msp_product_id,
                                quantity=devices, retail_cents=MSP_RETAIL_CENTS, cost_cents=0,
                                taxable=False)
        return Customer(int(customer["id"]), name, tuple(ids))

    def org(self, name: str, *, users: int, package: str = "business", stack: str = "us1",
            trial: bool = False) -> Org:
        """A Proofpoint customer org of the partner with `users` active users; its domain is
        its name squashed (`Alder Dental` → `alderdental.example`)."""
        state = self.proofpoint.state
        domain = name.lower().replace(" ", "") + ".example"
        org = state.add_org(name, domain, parent=PARTNER_DOMAIN, stack=stack, package=package,
                            user_licenses=users, is_on_trial=trial)
        state.set_active_users(domain, users)
        return org

    def set_users(self, org: Org, users: int) -> None:
        """The org's active-user count changes at Proofpoint."""
        self.proofpoint.state.set_active_users(org.primary_domain, users)

    def remove_org(self, org: Org) -> None:
        """The org is gone from Proofpoint (the sandbox has no API for this: edit its state)."""
        remove_org(self.proofpoint.state, org)

    def map(self, *pairs: tuple[Org, Customer], minimum: int | None = None,
            included: int | None = None, status: VendorCustomerStatus = "mapped") -> None:
        """Seed Mapped (or Detached) rows, org → the customer's first recurring invoice,
        straight into the state DB."""
        with self.store() as tx:
            for org, customer in pairs:
                tx.put_vendor_customer(VendorCustomer(
                    vendor=VENDOR, vendor_customer_id=str(org.eid), name=org.name,
                    status=status, psa_customer_id=customer.id, psa_customer_name=customer.name,
                    schedule_id=customer.schedule_id, minimum=minimum, included=included))

    def not_mapped(self, *orgs: Org) -> None:
        """Seed Not mapped rows (as `mapping refresh` would) straight into the state DB."""
        with self.store() as tx:
            for org in orgs:
                tx.put_vendor_customer(VendorCustomer(
                    vendor=VENDOR, vendor_customer_id=str(org.eid), name=org.name,
                    status="not_mapped"))

    def table(self) -> dict[str, VendorCustomer]:
        """The mapping table from the state DB, by vendor customer name."""
        with self.store() as tx:
            return {row.name: row for row in tx.list_vendor_customers(VENDOR)}

    # -- inspecting Syncro -------------------------------------------------------------------

    def vendor_lines(self, schedule_id: int) -> list[Line]:
        """Lines of a recurring invoice that are not the MSP's own service."""
        return [ln for ln in self.lines(schedule_id) if ln.product_id != self.msp_product_id]

    def product(self, product_id: int) -> Record:
        """One product by id; fails the test if it does not exist."""
        found = self.syncro.state.products.get(product_id)
        assert found is not None, f"product {product_id} does not exist in Syncro"
        return found

def parse_json(result: Result) -> Any:
    """stdout as JSON; a failure shows what the command printed instead."""
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"not JSON (exit {result.code}):\n{result.stdout}\n{result.stderr[-3000:]}")


def remove_org(state: ProofpointState, org: Org) -> None:
    """Delete an org, its domains and its users from a Proofpoint sandbox state."""
    with state.lock:
        del state._orgs[org.eid]  # the sandbox has no removal API
        for domain in org.domains:
            state._by_domain.pop(domain.name, None)
        for user in org.users:
            state._users.pop(user.primary_email, None)
            state._passwords.pop(user.primary_email, None)


def _line(view: Record, state: SyncroState) -> Line:
    product = state.products.get(view["product_id"]) if view["product_id"] else None
    return Line(
        id=view["id"], schedule_id=view["schedule_id"], product_id=view["product_id"],
        product=product["name"] if product else None, name=view["name"],
        quantity=Decimal(view["quantity"]), retail=Decimal(view["retail_cents"]) / 100,
        cost=Decimal(view["cost_cents"]) / 100, taxable=bool(view["taxable"]))


@contextmanager
def open_world(directory: Path, *, syncro_state: SyncroState | None = None,
               proofpoint_state: ProofpointState | None = None) -> Iterator[World]:
    """Start both sandboxes (empty accounts unless states are given) for one world."""
    if proofpoint_state is None:
        proofpoint_state = ProofpointState()
        proofpoint_state.add_partner("Northgate IT", PARTNER_DOMAIN, stack="us1")
        proofpoint_state.add_login(PARTNER_DOMAIN, PROOFPOINT_USER, PROOFPOINT_PASSWORD)
    with ExitStack() as stack:
        syncro = stack.enter_context(
            SyncroSandbox(syncro_state or SyncroState(), requests_per_minute=6000))
        proofpoint = stack.enter_context(ProofpointSandbox(proofpoint_state, stacks=STACKS))
        world = World(syncro=syncro, proofpoint=proofpoint, directory=directory)
        if syncro_state is None:
            world.msp_product_id = int(syncro.state.products.add(
                MSP_PRODUCT, "Monitoring, patching and helpdesk per endpoint",
                price_retail="45.00", price_cost="0", taxable=False)["id"])
        yield world


@contextmanager
def open_demo_world(directory: Path) -> Iterator[World]:
    """The demo's Syncro account and Proofpoint partner (eight customers, seven orgs)."""
    with open_world(directory, syncro_state=demo_syncro_state(),
                    proofpoint_state=demo_proofpoint_state()) as world:
        world.config(proofpoint={"username": DEMO_PROOFPOINT_USER,
                                 "password": DEMO_PROOFPOINT_PASSWORD,
                                 "partner_domain": DEMO_PARTNER_DOMAIN})
        yield world


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """A fresh small world for one test (for a story that needs no neighbours)."""
    with open_world(tmp_path) as opened:
        yield opened


Build = Callable[[World], Any]


@contextmanager
def concurrently(request: pytest.FixtureRequest, tmp: pytest.TempPathFactory,
                 builds: Mapping[str, Build], *, demo: Collection[str] = (),
                 workers: int = 3) -> Iterator[dict[str, Future[Any]]]:
    """Build a module's scenarios at the same time, each in its own world.

    A scenario is a story of CLI calls whose outcome several tests then read; its name is the
    name of the fixture that hands it to them, and only scenarios some selected test of the
    module needs are built. Every CLI call is mostly interpreter start-up, so running the
    stories side by side is what keeps the e2e suite short. The worlds stay up until the
    module is done; a story that fails raises in every test that reads it.
    """
    needed = {name for item in request.session.items if item.path == request.path
              for name in getattr(item, "fixturenames", ())}
    chosen = {name: build for name, build in builds.items() if name in needed}
    with ExitStack() as stack:
        worlds = {name: stack.enter_context(
            (open_demo_world if name in demo else open_world)(tmp.mktemp(name)))
            for name in chosen}
        pool = stack.enter_context(ThreadPoolExecutor(max_workers=workers))
        yield {name: pool.submit(build, worlds[name]) for name, build in chosen.items()}


# -- a Cloud-iQ world: the MSP's Syncro account and its Crayon Cloud-iQ partner account -------

CLOUDIQ = "cloudiq"
CLOUDIQ_CLIENT_ID = "northgate-billing-sync"
CLOUDIQ_CLIENT_SECRET = "ciq-client-secret"  # a fake secret for a local fake server
CLOUDIQ_USER = f"billing-api@{PARTNER_DOMAIN}"
CLOUDIQ_PASSWORD = "ciq-sandbox-password"  # a fake password for a local fake server
MONTHLY, ANNUAL = "Monthly", "Annual"  # the partner's invoice profiles (billing motions)

PREMIUM = "CFQ7TTC0LCHC:0002"  # Microsoft 365 Business Premium
STANDARD = "CFQ7TTC0LDPB:0001"  # Microsoft 365 Business Standard
BASIC = "CFQ7TTC0LH18:0001"  # Microsoft 365 Business Basic
EXCHANGE = "CFQ7TTC0LH16:0001"  # Exchange Online (Plan 1)
TEAMS = "CFQ7TTC0QW7C:0001"  # Microsoft Teams Essentials
E3 = "CFQ7TTC0LFLX:0001"  # Microsoft 365 E3 (on the price list, bought by nobody)
AZURE = "DZH318Z0BPS6:0001"  # the Azure plan (usage)

PriceRow = tuple[Term | None, int, Decimal, Decimal]  # term, billing cycle, cost, retail
# The partner's price list: part number → (product name, rows). Prices per billing period
# (a year when billed annually); Crayon's cost is `SalesPrice`, retail `RecommendedRetailPrice`.
CLOUDIQ_PRICES: dict[str, tuple[str, tuple[PriceRow, ...]]] = {
    PREMIUM: ("Microsoft 365 Business Premium", (
        ("P1M", 1, Decimal("23.76"), Decimal("26.40")),
        ("P1Y", 1, Decimal("19.80"), Decimal("22.00")),
        ("P1Y", 2, Decimal("237.60"), Decimal("264.00")))),
    STANDARD: ("Microsoft 365 Business Standard", (
        ("P1M", 1, Decimal("13.50"), Decimal("15.00")),
        ("P1Y", 1, Decimal("11.25"), Decimal("12.50")))),
    BASIC: ("Microsoft 365 Business Basic", (
        ("P1M", 1, Decimal("6.48"), Decimal("7.20")),
        ("P1Y", 1, Decimal("5.40"), Decimal("6.00")))),
    EXCHANGE: ("Exchange Online (Plan 1)", (("P1Y", 1, Decimal("3.60"), Decimal("4.00")),)),
    TEAMS: ("Microsoft Teams Essentials", (("P1M", 1, Decimal("4.32"), Decimal("4.80")),)),
    E3: ("Microsoft 365 E3", (("P1Y", 1, Decimal("32.40"), Decimal("36.00")),)),
    AZURE: ("Azure plan", ((None, 1, Decimal("0.00"), Decimal("0.00")),)),
}


def sku_of(part_number: str, term: Term | None, billing_cycle: int = 1) -> str:
    """The daemon's SKU (README: `<PartNumber>:P1M`, `:P1Y:M`, `:P1Y:A`, bare for usage)."""
    if term is None:
        return part_number
    if term == "P1M":
        return f"{part_number}:P1M"
    return f"{part_number}:P1Y:{'A' if billing_cycle == 2 else 'M'}"


def list_price(sku: str) -> tuple[str, Decimal, Decimal]:
    """(product name, cost, retail) of a SKU on `CLOUDIQ_PRICES`."""
    for part_number, (name, rows) in CLOUDIQ_PRICES.items():
        for term, cycle, cost, retail in rows:
            if sku_of(part_number, term, cycle) == sku:
                return name, cost, retail
    raise KeyError(sku)


@dataclass(frozen=True)
class Month:
    """A calendar month; the sandbox bills whole months, the daemon reads the last 13 (UTC)."""

    year: int
    month: int

    @classmethod
    def from_now(cls, offset: int) -> Month:
        """The month `offset` months from the current one (-1: last month)."""
        today = datetime.now(UTC).date()
        index = today.year * 12 + today.month - 1 + offset
        return cls(index // 12, index % 12 + 1)

    @property
    def first(self) -> date:
        """Its first day."""
        return date(self.year, self.month, 1)

    @property
    def last(self) -> date:
        """Its last day."""
        return date(self.year, self.month, calendar.monthrange(self.year, self.month)[1])

    @property
    def days(self) -> int:
        """How many days it has."""
        return self.last.day

    def day(self, number: int) -> date:
        """One of its days."""
        return date(self.year, self.month, number)


class CloudiqTestSandbox(CloudiqSandbox):
    """The Cloud-iQ sandbox, able to expire its tokens in the middle of a run.

    `expire_tokens_before(n)` expires every access token (and refresh token, with `refresh`)
    just before the n-th API request from now is processed; token requests do not count.
    """

    def __init__(self, state: CloudiqState) -> None:
        super().__init__(state)
        self._countdown_lock = threading.Lock()
        self._countdown: int | None = None
        self._expire_refresh = False

    def expire_tokens_before(self, request: int, *, refresh: bool = False) -> None:
        """Arm the expiry (see the class)."""
        with self._countdown_lock:
            self._countdown, self._expire_refresh = request, refresh

    def handle(self, request: Request) -> Response:
        """Expire when the countdown reaches this request, then serve it."""
        if not request.path.rstrip("/").endswith("/connect/token"):
            with self._countdown_lock:
                if self._countdown is not None:
                    self._countdown -= 1
                    if self._countdown == 0:
                        self._countdown = None
                        self.state.expire_tokens(refresh=self._expire_refresh)
        return super().handle(request)


@dataclass(kw_only=True)
class CloudiqWorld(SyncroWorld):
    """The Syncro and Cloud-iQ sandboxes, a state database and configs in `directory`.

    Seeding goes straight into the sandboxes' state; mapping rows may be seeded straight into
    the state database; everything under test runs through the real CLI (`--vendor cloudiq`).
    """

    vendor: ClassVar[str] = CLOUDIQ
    cloudiq: CloudiqTestSandbox

    # -- config and CLI ----------------------------------------------------------------------

    @property
    def ciq(self) -> CloudiqState:
        """The Cloud-iQ partner account."""
        return self.cloudiq.state

    def config(self, name: str = "sync-daemon.toml", **overrides: Mapping[str, Any]) -> Path:
        """Write a config (`[section]` overrides as keyword arguments) and return its path;
        `product_sync_mode` is `in_use` unless overridden."""
        sections: dict[str, dict[str, Any]] = {
            "state": {"url": self.state_url},
            "log": {"format": "json", "level": "info"},
            "syncro": {"base_url": self.syncro.api_url, "api_token": DEFAULT_TOKEN,
                       "requests_per_minute": 6000},
            "cloudiq": {
                "base_url": self.cloudiq.api_url, "client_id": CLOUDIQ_CLIENT_ID,
                "client_secret": CLOUDIQ_CLIENT_SECRET, "username": CLOUDIQ_USER,
                "password": CLOUDIQ_PASSWORD, "organization_id": self.ciq.organization.id,
                "product_sync_mode": "in_use", "requests_per_minute": 6000,
            },
        }
        return self._write(name, sections, overrides)

    # -- seeding Syncro ----------------------------------------------------------------------

    def customer(self, name: str, *, schedules: Sequence[str] = ("Monthly Services",),
                 devices: int | None = 12) -> Customer:
        """A Syncro customer with recurring invoices; each gets one line of the MSP's own
        per-device service (`devices` of them) unless `devices` is None."""
        state = self.syncro.state
        customer = state.customers.add(business_name=name, firstname="Pat", lastname="Owner")
        ids = []
        for schedule_name in schedules:
            schedule = state.schedules.add(customer["id"], schedule_name)
            ids.append(int(schedule["id"]))
            if devices is not None:
                state.lines.add(schedule["id"], product_id=self.msp_product_id,
                                quantity=devices, retail_cents=MSP_RETAIL_CENTS, cost_cents=0,
                                taxable=False)
        return Customer(int(customer["id"]), name, tuple(ids))

    # -- seeding Cloud-iQ --------------------------------------------------------------------

    def profile(self, name: str) -> int:
        """The id of the invoice profile (billing motion) called `name`."""
        (found,) = [p.id for p in self.ciq.invoice_profiles() if p.name == name]
        return found

    def tenant(self, name: str) -> CustomerTenant:
        """A customer tenant on the Monthly invoice profile; its domain is its name squashed
        (`Alder Dental` → `alderdental.onmicrosoft.com`)."""
        domain = name.lower().replace(" ", "") + ".onmicrosoft.com"
        return self.ciq.add_tenant(name, domain, invoice_profile_id=self.profile(MONTHLY))

    def subscribe(self, tenant: CustomerTenant, part_number: str, seats: int, *,
                  start_on: date, term: Term | None = "P1M",
                  billing_cycle: int = 1) -> Subscription:
        """A subscription of the tenant (term None: usage, such as the Azure plan)."""
        return self.ciq.add_subscription(tenant.id, part_number, seats, start_on=start_on,
                                         term=term, billing_cycle=billing_cycle)

    def azure(self, subscription: Subscription, month: Month,
              *meters: tuple[str, str, str, str]) -> None:
        """Azure usage in one month: (meter, quantity, unit cost, unit retail) each."""
        for meter, quantity, cost, retail in meters:
            self.ciq.add_usage(subscription.id, year=month.year, month=month.month,
                               category="Virtual Machines", meter=meter, quantity=quantity,
                               unit_price=cost, retail_unit_price=retail)

    def close(self, month: Month) -> list[BillingStatement]:
        """Crayon bills the month: its statements appear."""
        return self.ciq.close_month(month.year, month.month)

    # -- the state database ------------------------------------------------------------------

    def map(self, tenant: CustomerTenant, customer: Customer, *, motion: str = MONTHLY,
            schedule_id: int | None = None) -> None:
        """Seed a Mapped row (tenant, billing motion) → the customer's recurring invoice."""
        with self.store() as tx:
            tx.put_vendor_customer(VendorCustomer(
                vendor=CLOUDIQ, vendor_customer_id=str(tenant.id), billing_motion=motion,
                name=tenant.name, status="mapped", psa_customer_id=customer.id,
                psa_customer_name=customer.name,
                schedule_id=schedule_id or customer.schedule_id))

    def table(self) -> dict[tuple[str, str], VendorCustomer]:
        """The mapping table from the state DB, by (tenant name, billing motion)."""
        with self.store() as tx:
            return {(r.name, r.billing_motion): r for r in tx.list_vendor_customers(CLOUDIQ)}

    # -- inspecting Syncro -------------------------------------------------------------------

    def recurring_lines(self, schedule_id: int) -> list[Line]:
        """Lines that bill every month, other than the MSP's own service."""
        return [ln for ln in self.lines(schedule_id)
                if ln.product_id != self.msp_product_id and ln.id not in self._one_time_ids()]

    def charge_lines(self, schedule_id: int) -> list[Line]:
        """One-time charge lines of a recurring invoice."""
        return [ln for ln in self.lines(schedule_id) if ln.id in self._one_time_ids()]

    def _one_time_ids(self) -> set[int]:
        state = self.syncro.state
        with state.lock:
            return {int(view["id"]) for view in state.lines.all() if view["one_time_charge"]}

def empty_cloudiq_state() -> CloudiqState:
    """A partner account with its API client and user, the Monthly and Annual invoice profiles
    and the price list of `CLOUDIQ_PRICES`; no tenants yet."""
    state = CloudiqState(organization_name="Northgate IT")
    state.add_client(CLOUDIQ_CLIENT_ID, CLOUDIQ_CLIENT_SECRET)
    state.add_user(CLOUDIQ_USER, CLOUDIQ_PASSWORD, first_name="Billing", last_name="Bot")
    state.add_invoice_profile(MONTHLY)
    state.add_invoice_profile(ANNUAL, annual=True)
    for part_number, (name, rows) in CLOUDIQ_PRICES.items():
        for term, cycle, cost, retail in rows:
            state.add_agreement_product(part_number, name, term=term, billing_cycle=cycle,
                                        sales_price=cost, retail_price=retail,
                                        unit="Usage" if term is None else "Licenses")
    return state


@contextmanager
def open_cloudiq_world(directory: Path) -> Iterator[CloudiqWorld]:
    """Start an empty Syncro account (with the MSP's own service product) and a Cloud-iQ
    partner account with its price list."""
    with SyncroSandbox(SyncroState(), requests_per_minute=6000) as syncro, \
            CloudiqTestSandbox(empty_cloudiq_state()) as cloudiq:
        world = CloudiqWorld(syncro=syncro, cloudiq=cloudiq, directory=directory)
        world.msp_product_id = int(syncro.state.products.add(
            MSP_PRODUCT, "Monitoring, patching and helpdesk per endpoint",
            price_retail="45.00", price_cost="0", taxable=False)["id"])
        yield world


CloudiqBuild = Callable[[CloudiqWorld], Any]


@contextmanager
def cloudiq_concurrently(request: pytest.FixtureRequest, tmp: pytest.TempPathFactory,
                         builds: Mapping[str, CloudiqBuild], *,
                         workers: int = 4) -> Iterator[dict[str, Future[Any]]]:
    """`concurrently` for Cloud-iQ worlds: each needed scenario built in its own world, side
    by side, the worlds kept up until the module is done."""
    needed = {name for item in request.session.items if item.path == request.path
              for name in getattr(item, "fixturenames", ())}
    chosen = {name: build for name, build in builds.items() if name in needed}
    with ExitStack() as stack:
        worlds = {name: stack.enter_context(open_cloudiq_world(tmp.mktemp(name)))
                  for name in chosen}
        pool = stack.enter_context(ThreadPoolExecutor(max_workers=workers))
        yield {name: pool.submit(build, worlds[name]) for name, build in chosen.items()}
