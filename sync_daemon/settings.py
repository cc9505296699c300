"""Configuration: one pydantic model per TOML section, loaded from a file and the environment.

Precedence, highest first: `SYNC_DAEMON_<SECTION>__<KEY>` environment variables, the TOML file,
the defaults below. Every problem becomes a `ConfigError` that names the file and the key.
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from sync_daemon.errors import ConfigError

ENV_PREFIX = "SYNC_DAEMON_"
CONFIG_ENV_VAR = "SYNC_DAEMON_CONFIG"
DEFAULT_CONFIG_PATH = Path("sync-daemon.toml")


def _http_url(value: str) -> str:
    """Validate an http(s) URL but keep the operator's spelling, minus a trailing slash."""
    AnyHttpUrl(value)
    return value.rstrip("/")


HttpUrl = Annotated[str, AfterValidator(_http_url)]


class Section(BaseModel):
    """A config section: unknown keys are errors, so a typo never passes silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class StateSettings(Section):
    """`[state]`: where the daemon keeps what it owns and what it did."""

    url: str = "sqlite:///sync-daemon.db"


class LogSettings(Section):
    """`[log]`: JSON lines for services, coloured console output for people."""

    format: Literal["json", "console"] = "json"
    level: Literal["debug", "info", "warning", "error"] = "info"


class SyncroSettings(Section):
    """`[syncro]`: the PSA the daemon writes to."""

    base_url: HttpUrl
    api_token: SecretStr = Field(min_length=1)
    # Syncro allows 180 requests per minute per IP (syncro-api.md §2).
    requests_per_minute: int = Field(default=180, gt=0, le=100_000)
    timeout_s: float = Field(default=30.0, gt=0, le=600)
    # Requests in flight at once (recurring-invoice reads; writes to different invoices).
    concurrency: int = Field(default=4, ge=1, le=16)


CRON_FIELDS = 5


def _cron(value: str) -> str:
    """A five-field crontab expression whose fields the scheduler accepts."""
    if len(value.split()) != CRON_FIELDS:
        raise ValueError("expected a 5-field cron expression such as '0 6 * * *'")
    # Imported here: the scheduler module imports this one (through the jobs it runs).
    from sync_daemon.scheduler import check_cron  # noqa: PLC0415

    check_cron(value)
    return value


Cron = Annotated[str, AfterValidator(_cron)]
Money = Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=2)]


# "auto" applies a pass's plan at once; "required" stores it for `sync-daemon plan approve`.
Approval = Literal["auto", "required"]


class PackagePrice(Section):
    """`[proofpoint.packages.<key>]`: the MSP's price for one Proofpoint package."""

    name: str = Field(min_length=1)
    cost: Money
    retail: Money


class ProofpointSettings(Section):
    """`[proofpoint]`: Proofpoint Essentials, one or several stacks."""

    enabled: bool = True
    base_url: HttpUrl | Annotated[list[HttpUrl], Field(min_length=1)]
    username: str = Field(min_length=1)
    password: SecretStr = Field(min_length=1)
    partner_domain: str = Field(min_length=1)
    count: Literal["active_users", "user_licenses", "billable_users"] = "active_users"
    bill_trials: bool = False
    schedule: Cron = "0 6 * * *"
    approval: Approval = "auto"
    # Proofpoint documents no rate limit; stay polite.
    requests_per_minute: int = Field(default=120, gt=0, le=100_000)
    timeout_s: float = Field(default=30.0, gt=0, le=600)
    packages: dict[str, PackagePrice] = Field(default_factory=dict)

    @property
    def base_urls(self) -> list[str]:
        """Every stack to read, in the order given."""
        return [self.base_url] if isinstance(self.base_url, str) else list(self.base_url)


class CloudiqSettings(Section):
    """`[cloudiq]`: Crayon Cloud-iQ, Microsoft CSP bought through Crayon.

    `billing_motions` are invoice profile names (empty = every profile); `product_sync_mode`
    `all` offers the whole price list as products, `in_use` only the SKUs on the statements read.
    """

    enabled: bool = True
    base_url: HttpUrl = "https://api.crayon.com/api/v1"
    client_id: str = Field(min_length=1)
    client_secret: SecretStr = Field(min_length=1)
    username: str = Field(min_length=1)
    password: SecretStr = Field(min_length=1)
    organization_id: int = Field(gt=0)
    billing_motions: list[str] = Field(default_factory=list)
    product_sync_mode: Literal["all", "in_use"] = "all"
    sync_azure: bool = True
    sync_annual: bool = True
    new_products_taxable: bool = True
    schedule: Cron = "0 5 * * *"
    approval: Approval = "auto"
    # Cloud-iQ documents no rate limit (vendor-apis.md §C.3); stay polite.
    requests_per_minute: int = Field(default=120, gt=0, le=100_000)
    timeout_s: float = Field(default=30.0, gt=0, le=600)

    @field_validator("billing_motions")
    @classmethod
    def _distinct_motions(cls, value: list[str]) -> list[str]:
        names = [name.strip() for name in value]
        if any(not name for name in names):
            raise ValueError("a billing motion (invoice profile name) must not be empty")
        folded = [name.casefold() for name in names]
        if len(set(folded)) != len(folded):
            raise ValueError("a billing motion is listed twice")
        return names


def _time_zone(value: str) -> str:
    """An IANA time zone name such as `Europe/Oslo`."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("not a known time zone; use an IANA name such as 'Europe/Oslo' "
                         "or 'UTC'") from None
    return value


class DaemonSettings(Section):
    """`[daemon]`: how `sync-daemon run` schedules passes and how it stops."""

    timezone: Annotated[str, AfterValidator(_time_zone)] = "UTC"
    catch_up: bool = True
    shutdown_timeout_s: float = Field(default=30.0, gt=0, le=3600)

    @property
    def zone(self) -> ZoneInfo:
        """The time zone the vendors' `schedule` crons are read in."""
        return ZoneInfo(self.timezone)


class ProductsSettings(Section):
    """`[products]`: how the daemon names and creates Syncro products."""

    prefix: str = Field(default="PC_", min_length=1, max_length=20)
    new_products_taxable: bool = True


class SafetySettings(Section):
    """`[safety]`: stop a plan that looks like a vendor glitch instead of real change."""

    max_decrease_percent: Decimal = Field(default=Decimal(30), ge=0, le=100)
    max_zeroed_customers: int = Field(default=3, ge=0)


NotifyOn = Literal["error", "warning", "unmapped"]
DEFAULT_NOTIFY_ON: tuple[NotifyOn, ...] = ("error", "warning")


class NotifySettings(Section):
    """`[notify]`: one digest e-mail per pass that has something in `on`; empty `email_to` = off.

    `on`: "error" (a failed or partial pass, failed changes, error notices), "warning"
    (warnings other than unmapped: price changes, detached customers, ...), "unmapped".
    """

    email_to: list[str] = Field(default_factory=list)
    email_from: str = Field(default="sync-daemon@localhost", min_length=3)
    smtp_host: str = Field(min_length=1)
    smtp_port: int = Field(default=587, gt=0, le=65535)
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    starttls: bool = True
    on: list[NotifyOn] = Field(default_factory=lambda: list(DEFAULT_NOTIFY_ON))

    @field_validator("email_to")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        addresses = [address.strip() for address in value]
        for address in addresses:
            if "@" not in address or any(c.isspace() or c in ",;<>" for c in address):
                raise ValueError(f"not an e-mail address: {address!r}")
        return addresses

    @property
    def enabled(self) -> bool:
        """Whether there is anyone to send to."""
        return bool(self.email_to)


class Settings(BaseSettings):
    """The whole configuration."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    state: StateSettings = StateSettings()
    log: LogSettings = LogSettings()
    syncro: SyncroSettings
    products: ProductsSettings = ProductsSettings()
    safety: SafetySettings = SafetySettings()
    daemon: DaemonSettings = DaemonSettings()
    proofpoint: ProofpointSettings | None = None
    cloudiq: CloudiqSettings | None = None
    notify: NotifySettings | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file arrives as init arguments; the environment must win over it.
        return env_settings, init_settings

    def vendors(self) -> dict[str, ProofpointSettings | CloudiqSettings]:
        """Every vendor with a section in the config, enabled or not, in sync order."""
        sections = {"proofpoint": self.proofpoint, "cloudiq": self.cloudiq}
        return {name: section for name, section in sections.items() if section is not None}

    def secrets(self) -> list[str]:
        """Every secret value, so logs and outputs can be scrubbed of them."""
        found = [self.syncro.api_token.get_secret_value()]
        if self.proofpoint is not None:
            found.append(self.proofpoint.password.get_secret_value())
        if self.cloudiq is not None:
            found += [self.cloudiq.client_secret.get_secret_value(),
                      self.cloudiq.password.get_secret_value()]
        if self.notify is not None and self.notify.smtp_password is not None:
            found.append(self.notify.smtp_password.get_secret_value())
        return found


def resolve_config_path(option: str | None) -> Path:
    """`--config`, else `$SYNC_DAEMON_CONFIG`, else `./sync-daemon.toml`."""
    if option:
        return Path(option)
    from_env = os.environ.get(CONFIG_ENV_VAR)
    return Path(from_env) if from_env else DEFAULT_CONFIG_PATH


def load_settings(path: Path) -> Settings:
    """Read and validate the configuration, raising `ConfigError` that names file and key."""
    data = _read_toml(path)
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_describe(path, exc)) from None


SECRET_KEYS = frozenset({"api_token", "password", "client_secret", "smtp_password"})


def insecure_permissions_warning(path: Path) -> str | None:
    """A warning when a config file that holds secrets is open to other users (group or
    others may read or write it); None when it holds no secret (they live in the environment).
    """
    try:
        mode = path.stat().st_mode
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    if mode & 0o077 and _holds_secret(data):
        return (
            f"{path} holds secrets but other users may read it "
            f"(mode {stat.filemode(mode)}); run: chmod 600 {path}"
        )
    return None


def _holds_secret(data: Mapping[str, Any]) -> bool:
    return any(
        (key in SECRET_KEYS and value not in ("", None))
        or (isinstance(value, Mapping) and _holds_secret(value))
        for key, value in data.items()
    )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: config file not found (use --config PATH or set {CONFIG_ENV_VAR})"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from None
    try:
        # Money in TOML may be written as a bare number: never let it become a float.
        return tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _describe(path: Path, exc: ValidationError) -> str:
    """One line per problem: `file: section.key: what is wrong (got ...)`."""
    lines = []
    for error in exc.errors(include_url=False):
        key = ".".join(str(part) for part in error["loc"])
        message = _message(error)
        lines.append(f"{path}: {key}: {message}")
    return "\n".join(lines)


def _message(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    if kind == "missing":
        return "missing (required)"
    if kind == "extra_forbidden":
        return "unknown key"
    message = str(error["msg"])
    # Never echo what was typed into a secret field back to the terminal.
    if any(word in str(part) for part in error["loc"] for word in ("token", "password", "secret")):
        return message
    value = error.get("input")
    if isinstance(value, str | int | float | bool):
        return f"{message} (got {value!r})"
    return message
