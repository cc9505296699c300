"""Cloud-iQ's JSON (PascalCase, vendor-apis §C.3, assumed-shapes §3.4-3.7): how each object of
the account looks on the wire, and how a JSON answer is written."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import date, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sync_daemon.sandbox.cloudiq.model import (
    CSP_PROGRAM,
    MICROSOFT,
    AgreementProduct,
    ApiUser,
    BillingRecord,
    BillingStatement,
    CustomerTenant,
    InvoiceProfile,
    Organization,
    Subscription,
)
from sync_daemon.sandbox.http import Response, json_bytes, json_response

if TYPE_CHECKING:
    from sync_daemon.sandbox.cloudiq.state import CloudiqState

_AGREEMENT = (9001, "Microsoft CSP")
_AGREEMENT_TYPE = 13  # assumed-shapes §3.5
_TENANT_TYPE_T2 = 2  # an end customer of a reseller
_LIST_PRICE, _FIXED_PRICE = 2, 3  # SubscriptionPriceType
_CANCELLATION_WINDOW = timedelta(days=7)  # NCE: a new term can be cancelled within 7 days
# ASP.NET writes non-ASCII text as UTF-8, not as `\u` escapes.
_ENSURE_ASCII = False


def respond(payload: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """A JSON answer as Cloud-iQ writes it; Decimals go out as exact numbers."""
    return json_response(payload, status, headers, ensure_ascii=_ENSURE_ASCII)


def _ref(key: int, name: str) -> dict[str, Any]:
    return {"Id": key, "Name": name}


def _offset(day: date) -> str:
    """A `DateTimeOffset` at midnight UTC."""
    return f"{day.isoformat()}T00:00:00+00:00"


def _naive(day: date | None) -> str | None:
    """A `DateTime` without offset."""
    return None if day is None else f"{day.isoformat()}T00:00:00"


def _money(value: Decimal, currency: str) -> dict[str, Any]:
    return {"Value": value, "CurrencyCode": currency}


class Views:
    """Renders state objects as the API's JSON."""

    def __init__(self, state: CloudiqState) -> None:
        self.state = state

    def user(self, user: ApiUser) -> dict[str, Any]:
        return {
            "Id": user.id, "UserName": user.username, "FirstName": user.first_name,
            "LastName": user.last_name, "Email": user.email, "EmailConfirmed": True,
            "LockoutEnabled": False, "LockoutEnd": None, "PhoneNumber": None,
            "PhoneNumberConfirmed": False, "TwoFactorEnabled": False, "TenantAdmin": False,
        }  # fmt: skip

    def organization(self, organization: Organization) -> dict[str, Any]:
        return _ref(organization.id, organization.name)

    def profile(self, profile: InvoiceProfile) -> dict[str, Any]:
        return {
            "Id": profile.id, "Organization": self._organization_ref(profile.organization_id),
            "Name": profile.name, "InvoiceReference": None, "CustomerReference": None,
            "RequisitionNumber": None,
        }  # fmt: skip

    def tenant(self, tenant: CustomerTenant) -> dict[str, Any]:
        return {
            "Id": tenant.id, "Name": tenant.name, "Publisher": _ref(*MICROSOFT),
            "Program": _ref(*CSP_PROGRAM), "PublisherCustomerId": tenant.publisher_customer_id,
            "ExternalPublisherCustomerId": None, "Domain": tenant.domain,
            "DomainPrefix": tenant.domain_prefix, "Reference": tenant.reference,
            "CustomerTenantType": _TENANT_TYPE_T2, "EntityStatus": 0,
            "Organization": self._organization_ref(tenant.organization_id),
            "InvoiceProfile": self._profile_ref(tenant.invoice_profile_id), "Consumer": None,
            "ResellerMarkup": Decimal(0), "DefaultSubscriptionPriceType": _LIST_PRICE,
        }  # fmt: skip

    def subscription(self, subscription: Subscription) -> dict[str, Any]:
        tenant = self.state.tenant(subscription.tenant_id)
        product = subscription.product
        term_start, term_end = subscription.term_on(self.state.today or subscription.start_on)
        cancellable = None if subscription.term is None else term_start + _CANCELLATION_WINDOW
        return {
            "Id": subscription.id,
            "PublisherSubscriptionId": subscription.publisher_subscription_id,
            "Publisher": _ref(*MICROSOFT),
            "Organization": self._organization_ref(tenant.organization_id),
            "CustomerTenant": _ref(tenant.id, tenant.name),
            "Product": {
                "Id": product.id, "PartNumber": product.part_number,
                "PublisherProductId": product.publisher_product_id, "ItemName": product.name,
            },
            "Quantity": subscription.quantity, "Name": subscription.name,
            "Status": int(subscription.status), "ProvisionType": int(subscription.provision_type),
            "OrderId": subscription.order_id, "CreationDate": _offset(subscription.start_on),
            "BillingCycle": int(subscription.billing_cycle), "Markup": Decimal(0),
            "IsTrial": subscription.is_trial, "StartDate": _naive(subscription.start_on),
            "EndDate": _naive(term_end),
            "PriceType": _LIST_PRICE if subscription.fixed_sales_price is None else _FIXED_PRICE,
            "SalesPrice": subscription.sales_price,
            "InvoiceProfile": self._profile_ref(subscription.invoice_profile_id),
            "PartNumber": product.part_number, "TermDuration": subscription.term,
            "AutoRenewEnabled": subscription.auto_renew,
            "CancellationAllowedUntilDate": _offset(cancellable) if cancellable else None,
        }  # fmt: skip

    def agreement_product(self, row: AgreementProduct) -> dict[str, Any]:
        product, currency = row.product, self.state.currency
        return {
            "UniqueId": f"{_AGREEMENT[0]}-{row.price_id}", "Name": product.name,
            "PriceId": row.price_id,
            "ProductVariant": {
                "Id": row.variant_id, "PartNumber": product.part_number,
                "ProductName": product.name,
                "Product": {
                    "Id": product.id, "PartNumber": product.part_number,
                    "PublisherProductId": product.publisher_product_id,
                    "ItemLegalName": product.legal_name, "ItemName": product.name,
                },
                "Publisher": _ref(*MICROSOFT), "Program": _ref(*CSP_PROGRAM),
                "PurchasePeriod": row.term, "DefaultBillingCycleId": int(row.billing_cycle),
                "AvailableBillingCycleIds": [int(row.billing_cycle)],
                "PurchaseUnit": product.unit,
                "ProductFamily": _ref(product.family_id, product.family_name),
                "ProductCategory": product.category, "IsTrial": False,
            },
            "Agreement": _ref(*_AGREEMENT),
            "SalesPrice": _money(row.sales_price, currency),
            "RecommendedRetailPrice": _money(row.retail_price, currency),
            "MonthMultiplier": row.month_multiplier,
            "PriceListName": f"Microsoft CSP ({currency})", "AgreementType": _AGREEMENT_TYPE,
            "MinimumQuantity": 1, "MaximumQuantity": None,
        }  # fmt: skip

    def statement(self, statement: BillingStatement) -> dict[str, Any]:
        return {
            "Id": statement.id, "TotalSalesPrice": _money(statement.total, statement.currency),
            "InvoiceProfile": self._profile_ref(statement.invoice_profile_id),
            "Organization": self._organization_ref(statement.organization_id),
            "StartDate": _offset(statement.start_on), "EndDate": _offset(statement.end_on),
            "ProvisionType": int(statement.provision_type), "OrderId": statement.order_id,
        }  # fmt: skip

    def record(self, record: BillingRecord) -> dict[str, Any]:
        tenant, product = record.tenant, record.product
        view: dict[str, Any] = {
            "Id": record.id, "BillingStatementId": record.statement_id,
            "Created": record.created_at.strftime("%Y-%m-%dT%H:%M:%S"),  # a DateTime (§3.3)
            # A string here, an integer everywhere else (assumed-shapes §3.7).
            "CustomerTenant": {
                "Id": str(tenant.id), "Name": tenant.name,
                "PublisherCustomerTenantId": tenant.publisher_customer_id,
                "Reference": tenant.reference, "Domain": tenant.domain,
            },
            "Subscription": {
                "Id": record.subscription_id, "Name": record.subscription_name,
                "PublisherSubscriptionId": record.publisher_subscription_id,
                "StartDate": _naive(record.subscription_start_on),
                "EndDate": _naive(record.subscription_end_on),
            },
            "Product": {
                "Id": product.id, "PartNumber": product.part_number,
                "InvoicePartNumber": product.part_number, "ItemLegalName": product.legal_name,
                "ItemName": product.name, "ProductFamilyName": product.family_name,
                "ProductCategoryName": product.category,
            },
            "StartDate": _naive(record.start_on), "EndDate": _naive(record.end_on),
            "Quantity": record.quantity, "IncludedQuantity": Decimal("0.0"),
            "InvoicePartNumber": product.part_number, "Unit": record.unit,
            "ItemUnitPrice": _money(record.unit_price, record.currency),
            "Amount": record.amount, "ResellerSalesUnitPrice": record.retail_unit_price,
            "ResellerSalesPriceTotal": record.retail_total, "Currency": record.currency,
            "ProvisionType": int(record.provision_type),
            "BillingCycle": int(record.billing_cycle), "TermDuration": record.term,
        }  # fmt: skip
        if record.meter_category is not None:
            view["MeterCategory"] = record.meter_category
            view["MeterName"] = record.meter_name
        return view

    def records_file(self, statement: BillingStatement) -> dict[str, Any]:
        """The statement with base64 of the UTF-8 JSON array of its records, never zipped
        (assumed-shapes §3.7)."""
        records = [self.record(record) for record in statement.records]
        data = json_bytes(records, ensure_ascii=_ENSURE_ASCII)
        return {
            "BillingStatement": self.statement(statement),
            "FileName": f"billing-records-{statement.id}.json",
            "Data": base64.b64encode(data).decode("ascii"),
        }

    def _organization_ref(self, organization_id: int) -> dict[str, Any]:
        return self.organization(self.state.organization_by_id(organization_id))

    def _profile_ref(self, profile_id: int) -> dict[str, Any]:
        return _ref(profile_id, self.state.invoice_profile(profile_id).name)
