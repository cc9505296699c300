"""Sandbox Crayon Cloud-iQ: a partner's Microsoft CSP tenants, price list and monthly billing
statements in memory, served over real HTTP under `/api/v1`.

Faithful to `reference/vendor-apis.md` §C.3 and `reference/assumed-shapes.md` §3.
"""

from sync_daemon.sandbox.cloudiq.api import CloudiqApiError, CloudiqSandbox, UserHandler
from sync_daemon.sandbox.cloudiq.billing import CENT, MonthlyBilling, prorate, to_cents
from sync_daemon.sandbox.cloudiq.model import (
    AgreementProduct,
    Amount,
    ApiClient,
    ApiUser,
    BillingCycle,
    BillingRecord,
    BillingStatement,
    CustomerTenant,
    InvoiceProfile,
    Organization,
    Product,
    ProvisionType,
    StatementKey,
    Subscription,
    SubscriptionStatus,
    Term,
    Usage,
)
from sync_daemon.sandbox.cloudiq.periods import (
    midnight,
    month_bounds,
    quantity_periods,
    shift_months,
    term_bounds,
)
from sync_daemon.sandbox.cloudiq.state import DEFAULT_ORGANIZATION_ID, CloudiqState
from sync_daemon.sandbox.cloudiq.tokens import (
    DEFAULT_EXPIRES_IN,
    DEFAULT_REFRESH_EXPIRES_IN,
    REQUIRED_SCOPE,
    IssuedTokens,
    TokenStore,
)

__all__ = [
    "CENT",
    "DEFAULT_EXPIRES_IN",
    "DEFAULT_ORGANIZATION_ID",
    "DEFAULT_REFRESH_EXPIRES_IN",
    "REQUIRED_SCOPE",
    "AgreementProduct",
    "Amount",
    "ApiClient",
    "ApiUser",
    "BillingCycle",
    "BillingRecord",
    "BillingStatement",
    "CloudiqApiError",
    "CloudiqSandbox",
    "CloudiqState",
    "CustomerTenant",
    "InvoiceProfile",
    "IssuedTokens",
    "MonthlyBilling",
    "Organization",
    "Product",
    "ProvisionType",
    "StatementKey",
    "Subscription",
    "SubscriptionStatus",
    "Term",
    "TokenStore",
    "Usage",
    "UserHandler",
    "midnight",
    "month_bounds",
    "prorate",
    "quantity_periods",
    "shift_months",
    "term_bounds",
    "to_cents",
]
