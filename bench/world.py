"""An MSP's accounts at scale for the benchmarks: N mapped customers, Proofpoint and Cloud-iQ
mixed, each with one recurring invoice of about five lines, about 200 SKUs.

The world keeps its own model of every count (`counts`), so the benchmark can compute what a
sync must write (the floor) and what a naive script would send without asking the daemon.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal

from sync_daemon.connectors.proofpoint import sku_for_package
from sync_daemon.sandbox import ProofpointState, SyncroState
from sync_daemon.sandbox.cloudiq import CloudiqState
from sync_daemon.state import StateStore, VendorCustomer

PARTNER_DOMAIN = "northgate-it.example"
PROOFPOINT_USER = f"api-billing@{PARTNER_DOMAIN}"
PROOFPOINT_PASSWORD = "pp-bench-password"
CLOUDIQ_CLIENT_ID = "northgate-billing-sync"
CLOUDIQ_CLIENT_SECRET = "ciq-bench-secret"
CLOUDIQ_USER = f"billing-api@{PARTNER_DOMAIN}"
CLOUDIQ_PASSWORD = "ciq-bench-password"
MONTHLY = "Monthly"
PAGE_SIZE = 25  # Syncro's page size for products (and the sandbox's)

# `[proofpoint.packages]`: (vendor product name, cost, retail).
PACKAGES: dict[str, tuple[str, Decimal, Decimal]] = {
    "business": ("Proofpoint Essentials Business", Decimal("1.55"), Decimal("3.10")),
    "business_plus": ("Proofpoint Essentials Business+", Decimal("2.05"), Decimal("4.15")),
    "advanced": ("Proofpoint Essentials Advanced", Decimal("2.60"), Decimal("5.20")),
    "professional": ("Proofpoint Essentials Professional", Decimal("3.45"), Decimal("6.90")),
}
CLOUDIQ_SKUS = 196  # with the four Proofpoint packages: 200 SKUs
MSP_PRODUCTS = ("Managed Services - Per Device", "Backup - Per Server", "Helpdesk - Per User",
                "Firewall Management")
CloudiqKey = tuple[int, str]  # (subscription id, sku)


def month_offset(offset: int) -> tuple[int, int]:
    """(year, month) `offset` months from the current one (UTC)."""
    today = datetime.now(UTC).date()
    index = today.year * 12 + today.month - 1 + offset
    return index // 12, index % 12 + 1


@dataclass
class Customer:
    """One mapped customer: its vendor, vendor id, Syncro schedule and counts per SKU."""

    vendor: str
    vendor_id: str
    name: str
    syncro_id: int
    schedule_id: int
    counts: dict[str, int]
    domain: str = ""
    subscriptions: dict[str, int] = field(default_factory=dict)  # Cloud-iQ: sku → sub id


@dataclass
class World:
    """The three vendor accounts and the model of what they hold."""

    size: int
    syncro: SyncroState
    proofpoint: ProofpointState
    cloudiq: CloudiqState
    customers: list[Customer]
    cloudiq_skus: list[str]
    rng: random.Random

    def of(self, vendor: str) -> list[Customer]:
        """The customers of one vendor."""
        return [c for c in self.customers if c.vendor == vendor]

    def vendor_skus(self, vendor: str) -> set[str]:
        """SKUs the daemon keeps a product for (Proofpoint: used packages; Cloud-iQ: the
        whole price list, `product_sync_mode = "all"`)."""
        if vendor == "cloudiq":
            return set(self.cloudiq_skus)
        return {sku for c in self.of(vendor) for sku in c.counts}

    def lines(self, vendor: str) -> int:
        """Lines the daemon manages for `vendor` once synced (one per SKU with a count > 0)."""
        return sum(1 for c in self.of(vendor) for n in c.counts.values() if n > 0)

    def change_counts(self, fraction: float) -> int:
        """Change `fraction` of all counts at the vendors (Cloud-iQ bills a new month);
        return how many changed."""
        keys = [(c, sku) for c in self.customers for sku in c.counts]
        chosen = self.rng.sample(keys, round(len(keys) * fraction))
        year, month = month_offset(-1)
        for customer, sku in chosen:
            count = customer.counts[sku] + self.rng.randint(1, 5)
            customer.counts[sku] = count
            if customer.vendor == "proofpoint":
                self.proofpoint.set_active_users(customer.domain, count)
            else:
                self.cloudiq.set_quantity(customer.subscriptions[sku], count,
                                          on=date(year, month, 1))
        self.cloudiq.close_month(year, month)
        return len(chosen)


def generate(size: int, *, seed: int = 7) -> World:
    """N customers, alternately Proofpoint orgs and Cloud-iQ tenants, all mapped; Cloud-iQ
    has billed the month before last (seats from its first day, so no prorations)."""
    rng = random.Random(seed)
    syncro = SyncroState()
    msp = [int(syncro.products.add(name, name, price_retail="45.00", price_cost="0",
                                   taxable=False)["id"]) for name in MSP_PRODUCTS]
    proofpoint = ProofpointState()
    proofpoint.add_partner("Northgate IT", PARTNER_DOMAIN, stack="us1")
    proofpoint.add_login(PARTNER_DOMAIN, PROOFPOINT_USER, PROOFPOINT_PASSWORD)
    cloudiq = _cloudiq_account()
    year, month = month_offset(-2)
    started = date(year, month, 1)
    part_numbers = [f"CFQ7TTC0{i:04d}" for i in range(CLOUDIQ_SKUS)]
    profile = next(p.id for p in cloudiq.invoice_profiles() if p.name == MONTHLY)
    customers = []
    for index in range(size):
        name = f"Customer {index:05d}"
        vendor = "proofpoint" if index % 2 == 0 else "cloudiq"
        own = 4 if vendor == "proofpoint" else 5 - rng.choice((3, 4))  # ~5 lines with vendor's
        customer = syncro.customers.add(business_name=name, firstname="Pat", lastname="Owner")
        schedule = syncro.schedules.add(customer["id"], "Monthly Services")
        for product_id in msp[:own]:
            syncro.lines.add(schedule["id"], product_id=product_id, quantity=rng.randint(1, 40),
                             retail_cents=4500, cost_cents=0, taxable=False)
        if vendor == "proofpoint":
            domain = f"customer{index:05d}.example"
            package = rng.choice(list(PACKAGES))
            users = rng.randint(3, 250)
            org = proofpoint.add_org(name, domain, parent=PARTNER_DOMAIN, stack="us1",
                                     package=package, user_licenses=users)
            proofpoint.set_active_users(domain, users)
            customers.append(Customer(vendor, str(org.eid), name, int(customer["id"]),
                                      int(schedule["id"]),
                                      {sku_for_package(package): users}, domain=domain))
        else:
            tenant = cloudiq.add_tenant(name, f"customer{index:05d}.onmicrosoft.com",
                                        invoice_profile_id=profile)
            picked = rng.sample(part_numbers, 5 - own)
            counts, subscriptions = {}, {}
            for part_number in picked:
                seats = rng.randint(1, 120)
                sub = cloudiq.add_subscription(tenant.id, part_number, seats, start_on=started)
                sku = f"{part_number}:P1M"
                counts[sku], subscriptions[sku] = seats, sub.id
            customers.append(Customer(vendor, str(tenant.id), name, int(customer["id"]),
                                      int(schedule["id"]), counts,
                                      subscriptions=subscriptions))
    cloudiq.close_month(year, month)
    return World(size, syncro, proofpoint, cloudiq, customers,
                 [f"{p}:P1M" for p in part_numbers], rng)


def _cloudiq_account() -> CloudiqState:
    state = CloudiqState(organization_name="Northgate IT")
    state.add_client(CLOUDIQ_CLIENT_ID, CLOUDIQ_CLIENT_SECRET)
    state.add_user(CLOUDIQ_USER, CLOUDIQ_PASSWORD, first_name="Billing", last_name="Bot")
    state.add_invoice_profile(MONTHLY)
    for i in range(CLOUDIQ_SKUS):
        cost = Decimal(300 + i * 7) / 100
        state.add_agreement_product(f"CFQ7TTC0{i:04d}", f"Microsoft product {i:03d}",
                                    term="P1M", sales_price=cost,
                                    retail_price=(cost * Decimal("1.2")).quantize(Decimal("0.01")))
    return state


def seed_mappings(world: World, state_url: str) -> None:
    """Every customer Mapped to its recurring invoice, straight into the state database."""
    with StateStore.open(state_url) as store, store.transaction() as tx:
        for c in world.customers:
            tx.put_vendor_customer(VendorCustomer(
                vendor=c.vendor, vendor_customer_id=c.vendor_id,
                billing_motion=MONTHLY if c.vendor == "cloudiq" else "",
                name=c.name, status="mapped", psa_customer_id=c.syncro_id,
                psa_customer_name=c.name, schedule_id=c.schedule_id))
