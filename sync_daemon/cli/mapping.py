"""`sync-daemon mapping ...`: the customer-mapping table (vendor customer → Syncro customer)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import click

from sync_daemon.cli.base import VENDOR, Context, cli, handles_errors, print_table
from sync_daemon.errors import ConfigError
from sync_daemon.mapping import manage, table
from sync_daemon.state import VendorCustomer

STATUS = click.Choice(["mapped", "not-mapped", "detached"])
SORT = click.Choice(["vendor-customer", "status", "psa-customer"])
LIST_FORMAT = click.Choice(["table", "json", "csv"])
FIELDS = ("vendor", "vendor_customer_id", "vendor_customer", "status", "psa_customer_id",
          "psa_customer", "schedule_id", "billing_motion", "minimum", "included")


@cli.group()
def mapping() -> None:
    """List, map, unmap, suggest, import and export vendor customers."""


def _row(r: VendorCustomer) -> dict[str, object]:
    return {"vendor": r.vendor, "vendor_customer_id": r.vendor_customer_id,
            "vendor_customer": r.name, "status": table.STATUS_NAMES[r.status],
            "psa_customer_id": r.psa_customer_id, "psa_customer": r.psa_customer_name,
            "schedule_id": r.schedule_id, "billing_motion": r.billing_motion,
            "minimum": r.minimum, "included": r.included}


@mapping.command("list")
@click.option("--vendor", type=VENDOR, required=True)
@click.option("--status", type=STATUS)
@click.option("--search", metavar="TEXT", help="Case-insensitive text in either name or the id.")
@click.option("--sort", type=SORT, default="vendor-customer", show_default=True)
@click.option("--format", "format_", type=LIST_FORMAT, default="table", show_default=True)
@click.pass_obj
@handles_errors
def list_(obj: Context, *, vendor: str, status: str | None, search: str | None, sort: str,
          format_: str) -> None:
    """Show the mapping table."""
    app = obj.app()
    try:
        rows = [_row(r) for r in table.select(manage.rows(app, vendor), status=status,
                                                search=search, sort=sort)]  # type: ignore[arg-type]
    finally:
        app.close()
    if format_ == "json":
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
    elif format_ == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        click.echo(out.getvalue(), nl=False)
    else:
        columns = ["vendor_customer", "vendor_customer_id", "status", "psa_customer",
                   "schedule_id"]
        if vendor == "cloudiq":  # a tenant is mapped once per billing motion
            columns.insert(2, "billing_motion")
        print_table(columns, [[r[c] for c in columns] for r in rows],
                    empty="No vendor customers (run `sync-daemon mapping refresh` first).")


@mapping.command("map")
@click.option("--vendor", type=VENDOR, required=True)
@click.argument("vendor_customer")
@click.argument("psa_customer")
@click.option("--schedule", "schedule_id", type=int, help="Syncro recurring invoice id.")
@click.option("--billing-motion", help="Cloud-iQ billing motion of the vendor customer.")
@click.option("--minimum", type=click.IntRange(min=0), help="Bill at least this many.")
@click.option("--included", type=click.IntRange(min=0), help="This many are included free.")
@click.pass_obj
@handles_errors
def map_(obj: Context, *, vendor: str, vendor_customer: str, psa_customer: str,
         schedule_id: int | None, billing_motion: str | None, minimum: int | None,
         included: int | None) -> None:
    """Map VENDOR_CUSTOMER to PSA_CUSTOMER (each by id or exact name)."""
    app = obj.app()
    try:
        row = manage.map_customer(app, vendor, vendor_customer, psa_customer,
                                  schedule_id=schedule_id, billing_motion=billing_motion,
                                  minimum=minimum, included=included)
    finally:
        app.close()
    click.echo(f"Mapped {row.name} ({row.vendor_customer_id}) → {row.psa_customer_name} "
               f"({row.psa_customer_id}), recurring invoice {row.schedule_id}")


@mapping.command("unmap")
@click.option("--vendor", type=VENDOR, required=True)
@click.argument("vendor_customer")
@click.option("--billing-motion")
@click.pass_obj
@handles_errors
def unmap(obj: Context, vendor: str, vendor_customer: str, billing_motion: str | None) -> None:
    """Set VENDOR_CUSTOMER back to Not mapped (a Detached one leaves the table)."""
    app = obj.app()
    try:
        before, after = manage.unmap_customer(app, vendor, vendor_customer, billing_motion)
    finally:
        app.close()
    if after is None:
        click.echo(f"Removed detached {before.name} ({before.vendor_customer_id}) from the table")
    else:
        click.echo(f"Unmapped {before.name} ({before.vendor_customer_id}): now Not mapped")


@mapping.command("refresh")
@click.option("--vendor", type=VENDOR, required=True)
@click.pass_obj
@handles_errors
def refresh(obj: Context, vendor: str) -> None:
    """Pull the vendor's customer list into the table."""
    app = obj.app()
    try:
        changes, seen = manage.refresh(app, vendor)
    finally:
        app.close()
    click.echo(f"{vendor}: {len(seen)} customers; {len(changes.appeared)} new, "
               f"{len(changes.detached)} detached, {len(changes.returned)} back, "
               f"{len(changes.removals)} removed")


@mapping.command("suggest")
@click.option("--vendor", type=VENDOR, required=True)
@click.option("--apply", "apply_", is_flag=True,
              help="Map the unambiguous high-confidence suggestions.")
@click.pass_obj
@handles_errors
def suggest(obj: Context, vendor: str, apply_: bool) -> None:
    """Propose Syncro customers for Not mapped vendor customers, with a score."""
    app = obj.app()
    try:
        outcomes = manage.suggest_mappings(app, vendor, apply=apply_)
    finally:
        app.close()
    columns = ["vendor_customer", "psa_customer", "score", "confidence", "why"]
    if apply_:
        columns.append("result")
    rows = []
    for o in outcomes:
        s = o.suggestion
        why = "; ".join(s.reasons) + (f"; close second: {s.runner_up}" if s.runner_up else "")
        row: list[object] = [s.vendor_customer, f"{s.psa_customer} ({s.psa_customer_id})",
                             f"{s.score:.2f}", s.confidence, why]
        if apply_:
            row.append(f"mapped (recurring invoice {o.mapped_to_schedule})"
                       if o.mapped_to_schedule else f"skipped: {o.skipped}")
        rows.append(row)
    print_table(columns, rows, empty="No suggestions: every customer is mapped or unmatched.")


@mapping.command("export")
@click.option("--vendor", type=VENDOR, required=True)
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
@handles_errors
def export(obj: Context, vendor: str, file: Path) -> None:
    """Write the mapping table to FILE.csv."""
    app = obj.app()
    try:
        text = manage.export_csv(app, vendor)
    finally:
        app.close()
    try:
        file.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot write: {exc.strerror}") from None
    click.echo(f"Wrote {text.count(chr(10)) - 1} rows to {file}")


@mapping.command("import")
@click.option("--vendor", type=VENDOR, required=True)
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
@handles_errors
def import_(obj: Context, vendor: str, file: Path) -> None:
    """Read FILE.csv; every line is checked before anything changes."""
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read: {exc}") from None
    app = obj.app()
    try:
        rows = manage.import_csv(app, vendor, text)
    finally:
        app.close()
    mapped = sum(1 for r in rows if r.status == "mapped")
    click.echo(f"Imported {len(rows)} rows from {file}: {mapped} mapped, "
               f"{len(rows) - mapped} not mapped")
