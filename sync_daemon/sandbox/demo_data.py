"""Seed data for the demo: a small MSP's Syncro account before sync-daemon has touched it,
its Proofpoint Essentials partner account and its Crayon Cloud-iQ partner account."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sync_daemon.sandbox.cloudiq import CloudiqState, Term
from sync_daemon.sandbox.proofpoint import ProofpointState
from sync_daemon.sandbox.syncro import SyncroState


@dataclass(frozen=True, slots=True)
class _DemoCustomer:
    business_name: str
    domain: str
    firstname: str
    lastname: str
    phone: str
    city: str
    # (schedule name, [(product name, quantity)]) per recurring invoice
    schedules: tuple[tuple[str, tuple[tuple[str, int], ...]], ...]


# The MSP's own services; prices in cents (retail, cost).
_DEVICE = "Managed Services - Per Device"
_SERVER = "Managed Services - Per Server"
_BACKUP = "Remote Backup - Per Server"
_NETWORK = "Network Monitoring - Per Site"
_SERVICES: dict[str, tuple[str, int, int]] = {
    _DEVICE: ("Monitoring, patching and helpdesk per endpoint", 4500, 0),
    _SERVER: ("Monitoring, patching and backups per server", 12500, 0),
    _BACKUP: ("Offsite image backup, 500 GB included", 7500, 2200),
    _NETWORK: ("Firewall and switch monitoring per location", 9900, 0),
}

_MONTHLY = "Monthly Managed Services"

_CUSTOMERS = (
    _DemoCustomer(
        "Acme Dental Group", "acmedental.example", "Maria", "Lopez", "(555) 201-3344",
        "Springfield",
        ((_MONTHLY, ((_DEVICE, 18), (_NETWORK, 2))),),
    ),
    _DemoCustomer(
        "Evergreen Law LLP", "evergreenlaw.example", "Daniel", "Okafor", "(555) 404-1180",
        "Portland",
        ((_MONTHLY, ((_DEVICE, 15), (_SERVER, 1))),),
    ),
    _DemoCustomer(
        "Harbor Freight Logistics", "harborfreightlogistics.example", "Grace", "Nakamura",
        "(555) 733-9021", "Long Beach",
        (
            (_MONTHLY, ((_DEVICE, 42), (_SERVER, 3))),
            ("Monthly Backup - Warehouse", ((_BACKUP, 2),)),
        ),
    ),
    _DemoCustomer(
        "Summit Pediatrics", "summitpediatrics.example", "Priya", "Raman", "(555) 318-6650",
        "Boulder",
        ((_MONTHLY, ((_DEVICE, 22),)),),
    ),
    _DemoCustomer(
        "Blue Ridge Accounting", "blueridgeaccounting.example", "Tom", "Whitaker",
        "(555) 862-4417", "Asheville",
        ((_MONTHLY, ((_DEVICE, 9), (_BACKUP, 1))),),
    ),
    # A prospect: on file, but nothing billed yet.
    _DemoCustomer(
        "Northwind Traders", "northwindtraders.example", "Anne", "Dodsworth", "(555) 555-0147",
        "Seattle",
        (),
    ),
    _DemoCustomer(
        "Riverside Veterinary Clinic", "riversidevet.example", "Luis", "Ferreira",
        "(555) 290-7733", "Sacramento",
        ((_MONTHLY, ((_DEVICE, 11),)),),
    ),
    _DemoCustomer(
        "Pinecrest Property Management", "pinecrestpm.example", "Hannah", "Berg",
        "(555) 617-2095", "Bend",
        ((_MONTHLY, ((_DEVICE, 26), (_NETWORK, 4))),),
    ),
)  # fmt: skip


def demo_syncro_state() -> SyncroState:
    """A deterministic Syncro account: eight business customers, their monthly recurring
    invoices with lines of the MSP's own services, and one hand-made `PC_PPE-BUSINESS` product
    that sync-daemon can adopt."""
    state = SyncroState(subdomain="bluepeak", user_email="billing-bot@bluepeak-it.example")
    state.add_vendor("Proofpoint")
    state.add_vendor("Crayon")
    managed = state.add_category("Managed Services")
    security = state.add_category("Email Security")
    products = {
        name: state.products.add(
            name,
            description,
            price_retail=Decimal(retail) / 100,
            price_cost=Decimal(cost) / 100,
            taxable=False,
            category_ids=[managed],
        )["id"]
        for name, (description, retail, cost) in _SERVICES.items()
    }
    # Made by a technician in the Syncro UI before sync-daemon existed; no SKU, no vendor.
    state.products.add(
        "PC_PPE-BUSINESS",
        "Proofpoint Essentials Business",
        price_retail="3.00",
        price_cost="1.50",
        taxable=False,
        category_ids=[security],
    )
    for demo in _CUSTOMERS:
        customer = state.customers.add(
            business_name=demo.business_name,
            firstname=demo.firstname,
            lastname=demo.lastname,
            email=f"{demo.firstname.lower()}.{demo.lastname.lower()}@{demo.domain}",
            phone=demo.phone,
            city=demo.city,
            invoice_cc_emails=f"accounts@{demo.domain}",
        )
        for schedule_name, lines in demo.schedules:
            schedule = state.schedules.add(customer["id"], schedule_name, frequency="Monthly")
            for product_name, quantity in lines:
                _, retail, cost = _SERVICES[product_name]
                state.lines.add(
                    schedule["id"],
                    product_id=products[product_name],
                    quantity=quantity,
                    retail_cents=retail,
                    cost_cents=cost,
                    taxable=False,
                )
    return state


# -- Proofpoint Essentials -------------------------------------------------------------------

DEMO_PARTNER_DOMAIN = "bluepeak-it.example"
DEMO_PROOFPOINT_USER = f"api-admin@{DEMO_PARTNER_DOMAIN}"
DEMO_PROOFPOINT_PASSWORD = "sandbox-proofpoint-password"  # noqa: S105  a fake local password
DEMO_PROOFPOINT_READ_ONLY_USER = f"reports@{DEMO_PARTNER_DOMAIN}"
# The office manager of Acme Dental: an organization-level login, for the 403 paths.
DEMO_PROOFPOINT_ORG_ADMIN = "maria.lopez@acmedental.example"


@dataclass(frozen=True, slots=True)
class _DemoOrg:
    name: str  # Proofpoint's spelling, deliberately not always Syncro's
    domains: tuple[str, ...]
    stack: str
    package: str
    user_licenses: int | str
    users: int  # active, billable mailboxes
    contact: tuple[str, str] | None  # the main contact (as in Syncro), who has a mailbox too
    is_on_trial: bool = False
    when_renewal: date = date(2027, 1, 1)


_ORGS = (
    _DemoOrg("Acme Dental", ("acmedental.example", "acme-dental.example"), "us1", "business",
             25, 25, None, when_renewal=date(2026, 11, 1)),
    _DemoOrg("Evergreen Law", ("evergreenlaw.example", "evergreen-legal.example"), "us1",
             "business_plus", "15", 15, ("Daniel", "Okafor"), when_renewal=date(2027, 5, 1)),
    _DemoOrg("Harbor Freight Logistics", ("harborfreightlogistics.example",), "us1",
             "advanced", 45, 40, ("Grace", "Nakamura"), when_renewal=date(2026, 9, 17)),
    _DemoOrg("Summit Pediatrics PC", ("summitpediatrics.example",), "us2", "business", 15, 12,
             ("Priya", "Raman"), is_on_trial=True, when_renewal=date(2026, 3, 31)),
    _DemoOrg("Blue Ridge Accounting", ("blueridgeaccounting.example", "blueridgecpa.example"),
             "us1", "professional", 10, 8, ("Tom", "Whitaker"), when_renewal=date(2027, 2, 1)),
    _DemoOrg("Riverside Veterinary Clinic", ("riversidevet.example",), "us2", "business", 5, 6,
             ("Luis", "Ferreira"), when_renewal=date(2026, 12, 15)),
    # Not a Syncro customer: shows up as "Not mapped".
    _DemoOrg("Cobalt Marine Supply", ("cobaltmarine.example",), "us2", "business", 10, 10,
             ("Owen", "Price"), when_renewal=date(2027, 4, 1)),
)  # fmt: skip

_FIRST_NAMES = (
    "James", "Olivia", "Noah", "Emma", "Liam", "Ava", "Ethan", "Sophia", "Mason", "Isabella",
    "Lucas", "Mia", "Henry", "Amelia", "Jack", "Harper", "Owen", "Ella", "Leo", "Chloe",
    "Samuel", "Nora", "Caleb", "Ruby", "Isaac", "Alice", "Julian", "Clara", "Miles", "Hazel",
    "Felix", "Iris", "Adrian", "Lena", "Hugo", "Maya", "Elias", "Rosa", "Theo", "Vera",
)  # fmt: skip
_SURNAMES = (
    "Anderson", "Brooks", "Carter", "Diaz", "Ellis", "Foster", "Garcia", "Hayes", "Irwin",
    "Jensen", "Keller", "Larsen", "Morgan", "Novak", "Ortiz", "Patel", "Quinn", "Reyes",
    "Singh", "Turner", "Underwood", "Vance", "Walsh", "Young", "Zimmer", "Bishop", "Chen",
    "Dalton", "Evans", "Fischer", "Grant", "Holt", "Ibarra", "Jordan", "Kim", "Lowe", "Meyer",
    "Nash", "Olsen", "Price",
)  # fmt: skip


def _demo_people(count: int, offset: int) -> list[tuple[str, str]]:
    """`count` distinct (first name, surname) pairs, different for each org's `offset`."""
    return [
        (_FIRST_NAMES[(offset + n) % len(_FIRST_NAMES)],
         _SURNAMES[(offset * 7 + n * 3) % len(_SURNAMES)])
        for n in range(count)
    ]  # fmt: skip


def demo_proofpoint_state() -> ProofpointState:
    """A deterministic partner account for the MSP of the Syncro demo: seven customer orgs on
    two stacks, named and e-mail-domained like the Syncro customers (with small spelling
    differences), plus one org Syncro does not know."""
    state = ProofpointState()
    state.add_partner("BluePeak IT", DEMO_PARTNER_DOMAIN, stack="us1")
    state.add_login(DEMO_PARTNER_DOMAIN, DEMO_PROOFPOINT_USER, DEMO_PROOFPOINT_PASSWORD,
                    firstname="Billing", surname="Bot")  # fmt: skip
    state.add_login(DEMO_PARTNER_DOMAIN, DEMO_PROOFPOINT_READ_ONLY_USER, DEMO_PROOFPOINT_PASSWORD,
                    read_only=True, firstname="Monthly", surname="Reports")  # fmt: skip
    for offset, demo in enumerate(_ORGS):
        domain = demo.domains[0]
        state.add_org(
            demo.name, domain, parent=DEMO_PARTNER_DOMAIN, stack=demo.stack,
            package=demo.package, user_licenses=demo.user_licenses,
            is_on_trial=demo.is_on_trial, when_renewal=demo.when_renewal,
            extra_domains=demo.domains[1:],
        )  # fmt: skip
        people = _demo_people(demo.users, offset * 5)
        if demo.contact is None:
            state.add_login(domain, DEMO_PROOFPOINT_ORG_ADMIN, DEMO_PROOFPOINT_PASSWORD,
                            firstname="Maria", surname="Lopez")  # fmt: skip
            people = people[1:]
        else:
            people[0] = demo.contact
        for first, last in people:
            state.add_user(domain, f"{first}.{last}@{domain}".lower(),
                           firstname=first, surname=last)  # fmt: skip
    # Mailboxes that are not billable users, so a naive recount disagrees with active_users.
    state.add_user("harborfreightlogistics.example", "accounts@harborfreightlogistics.example",
                   firstname="Accounts", surname="Payable", type="functional_account")  # fmt: skip
    state.add_user("acmedental.example", "front.desk@acmedental.example", firstname="Front",
                   surname="Desk", is_active=False)  # fmt: skip
    state.add_user("blueridgeaccounting.example", "scanner@blueridgecpa.example",
                   firstname="Office", surname="Scanner", is_billable=False)  # fmt: skip
    return state


# -- Crayon Cloud-iQ -------------------------------------------------------------------------

DEMO_CLOUDIQ_ORGANIZATION_ID = 12345
DEMO_CLOUDIQ_CLIENT_ID = "bluepeak-billing-sync"
DEMO_CLOUDIQ_CLIENT_SECRET = "sandbox-cloudiq-client-secret"  # noqa: S105  a fake local secret
DEMO_CLOUDIQ_USER = f"billing-api@{DEMO_PARTNER_DOMAIN}"
DEMO_CLOUDIQ_PASSWORD = "sandbox-cloudiq-password"  # noqa: S105  a fake local password

_BASIC = "CFQ7TTC0LH18:0001"
_STANDARD = "CFQ7TTC0LDPB:0001"
_PREMIUM = "CFQ7TTC0LCHC:0002"
_E3 = "CFQ7TTC0LFLX:0001"
_EXCHANGE = "CFQ7TTC0LH16:0001"
_DEFENDER = "CFQ7TTC0TLAN:0001"
_TEAMS = "CFQ7TTC0QW7C:0001"
_AZURE = "DZH318Z0BPS6:0001"

# (part number, name, family, [(term, billing cycle, partner cost, retail)]), prices per
# billing period: a month-to-month term costs 20 % more than a yearly term paid monthly.
_PRICE_LIST: tuple[tuple[str, str, str, tuple[tuple[Term | None, int, str, str], ...]], ...] = (
    (_BASIC, "Microsoft 365 Business Basic", "Microsoft 365",
     (("P1M", 1, "6.48", "7.20"), ("P1Y", 1, "5.40", "6.00"), ("P1Y", 2, "64.80", "72.00"))),
    (_STANDARD, "Microsoft 365 Business Standard", "Microsoft 365",
     (("P1M", 1, "13.50", "15.00"), ("P1Y", 1, "11.25", "12.50"),
      ("P1Y", 2, "135.00", "150.00"))),
    (_PREMIUM, "Microsoft 365 Business Premium", "Microsoft 365",
     (("P1M", 1, "23.76", "26.40"), ("P1Y", 1, "19.80", "22.00"),
      ("P1Y", 2, "237.60", "264.00"))),
    (_E3, "Microsoft 365 E3", "Microsoft 365",
     (("P1Y", 1, "32.40", "36.00"), ("P1Y", 2, "388.80", "432.00"))),
    (_EXCHANGE, "Exchange Online (Plan 1)", "Exchange",
     (("P1M", 1, "4.32", "4.80"), ("P1Y", 1, "3.60", "4.00"))),
    (_DEFENDER, "Microsoft Defender for Business", "Security",
     (("P1Y", 1, "2.70", "3.00"), ("P1Y", 2, "32.40", "36.00"))),
    (_TEAMS, "Microsoft Teams Essentials", "Microsoft Teams", (("P1M", 1, "4.32", "4.80"),)),
    (_AZURE, "Azure plan", "Azure", ((None, 1, "0.00", "0.00"),)),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class _DemoSubscription:
    part_number: str
    term: Term | None
    billing_cycle: int
    quantity: int
    start_on: date
    changes: tuple[tuple[date, int], ...] = ()  # (from, quantity)
    is_trial: bool = False


@dataclass(frozen=True, slots=True)
class _DemoTenant:
    name: str  # Cloud-iQ's spelling, deliberately not always Syncro's
    domain: str
    reference: str
    subscriptions: tuple[_DemoSubscription, ...]
    # Azure usage: (category, meter, unit, cost and retail per unit, quantity per closed month)
    usage: tuple[tuple[str, str, str, str, str, tuple[str, str]], ...] = ()


_SEP, _OCT = date(2026, 9, 1), date(2026, 10, 1)
_TENANTS = (
    _DemoTenant("Acme Dental Group", "acmedental.onmicrosoft.com", "ACME-001", (
        # The reference's own example: 20 seats until 18 Oct, 23 from the 19th.
        _DemoSubscription(_PREMIUM, "P1M", 1, 20, date(2025, 3, 19),
                          ((date(2026, 10, 19), 23),)),
        _DemoSubscription(_EXCHANGE, "P1Y", 1, 3, date(2025, 6, 1)),
        _DemoSubscription(_AZURE, None, 1, 1, date(2025, 2, 10)),
    ), (("Virtual Machines", "D2s v5", "1 Hour", "0.0960", "0.1150", ("720", "744")),
        ("Storage", "Standard SSD Managed Disks - E10", "1/Month", "9.60", "11.52",
         ("2", "2")))),
    _DemoTenant("Evergreen Law", "evergreenlaw.onmicrosoft.com", "EVG-002", (
        _DemoSubscription(_STANDARD, "P1Y", 1, 15, date(2025, 5, 1)),
        # Annual/annual: charged whole in October, its anniversary, on the Annual profile.
        _DemoSubscription(_DEFENDER, "P1Y", 2, 15, date(2025, 10, 6)),
        _DemoSubscription(_TEAMS, "P1M", 1, 4, date(2026, 2, 1), ((date(2026, 9, 10), 2),)),
    )),
    _DemoTenant("Harbor Freight Logistics Inc.", "harborfreightlogistics.onmicrosoft.com",
                "HFL-003", (
        _DemoSubscription(_E3, "P1Y", 1, 40, date(2025, 1, 15), ((date(2026, 10, 6), 42),)),
        _DemoSubscription(_BASIC, "P1M", 1, 12, date(2025, 8, 1), ((date(2026, 9, 21), 10),)),
        _DemoSubscription(_AZURE, None, 1, 1, date(2025, 8, 1)),
    ), (("Virtual Machines", "B2ms", "1 Hour", "0.0832", "0.0998", ("1440", "1488")),
        ("Bandwidth", "Standard Data Transfer Out", "1 GB", "0.087", "0.1044",
         ("310.5", "287.25")))),
    _DemoTenant("Blue Ridge Accounting", "blueridgecpa.onmicrosoft.com", "BRA-004", (
        # Annual/annual bought in September 2026: charged whole on that month's Annual profile.
        _DemoSubscription(_PREMIUM, "P1Y", 2, 9, date(2026, 9, 15)),
        _DemoSubscription(_EXCHANGE, "P1M", 1, 2, date(2025, 11, 1)),
    )),
    _DemoTenant("Summit Pediatrics PC", "summitpediatrics.onmicrosoft.com", "SUM-005", (
        _DemoSubscription(_STANDARD, "P1M", 1, 22, date(2025, 4, 1), ((date(2026, 10, 12), 24),)),
        _DemoSubscription(_TEAMS, "P1M", 1, 25, date(2026, 10, 1), is_trial=True),
    )),
    # Not a Syncro customer: shows up as "Not mapped". New in September, so prorated.
    _DemoTenant("Cobalt Marine Supply", "cobaltmarine.onmicrosoft.com", "COB-006", (
        _DemoSubscription(_BASIC, "P1Y", 1, 10, date(2026, 9, 8)),
    )),
)  # fmt: skip


def demo_cloudiq_state() -> CloudiqState:
    """A deterministic Cloud-iQ partner account for the MSP of the Syncro demo: six tenants
    named like the Syncro customers (some spelled differently, one unknown to Syncro), a price
    list of 17 rows, quantity changes inside months, Azure usage for two tenants, annual
    subscriptions, and September and October 2026 closed, so closing November after a
    `set_quantity` shows a new statement with changed counts."""
    state = CloudiqState(organization_id=DEMO_CLOUDIQ_ORGANIZATION_ID,
                         organization_name="BluePeak IT")  # fmt: skip
    state.add_client(DEMO_CLOUDIQ_CLIENT_ID, DEMO_CLOUDIQ_CLIENT_SECRET)
    state.add_user(DEMO_CLOUDIQ_USER, DEMO_CLOUDIQ_PASSWORD, first_name="Billing",
                   last_name="Bot")  # fmt: skip
    state.add_invoice_profile("Monthly")
    state.add_invoice_profile("Annual", annual=True)
    for part_number, name, family, rows in _PRICE_LIST:
        for term, cycle, cost, retail in rows:
            state.add_agreement_product(
                part_number, name, term=term, billing_cycle=cycle, sales_price=cost,
                retail_price=retail, family=family,
                unit="Usage" if term is None else "Licenses",
            )  # fmt: skip
    for demo in _TENANTS:
        tenant = state.add_tenant(demo.name, demo.domain, reference=demo.reference)
        for wanted in demo.subscriptions:
            subscription = state.add_subscription(
                tenant.id, wanted.part_number, wanted.quantity, start_on=wanted.start_on,
                term=wanted.term, billing_cycle=wanted.billing_cycle, is_trial=wanted.is_trial,
            )  # fmt: skip
            for on, quantity in wanted.changes:
                state.set_quantity(subscription.id, quantity, on=on)
            for category, meter, unit, cost, retail, used in demo.usage * (wanted.term is None):
                for month, quantity_used in zip((_SEP, _OCT), used, strict=True):
                    state.add_usage(
                        subscription.id, year=month.year, month=month.month, category=category,
                        meter=meter, unit=unit, quantity=quantity_used, unit_price=cost,
                        retail_unit_price=retail,
                    )  # fmt: skip
    state.close_month(2026, 9)
    state.close_month(2026, 10)
    return state
