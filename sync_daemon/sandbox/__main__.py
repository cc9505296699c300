"""`python -m sync_daemon.sandbox`: serve the sandbox servers, or run the demo against them.

The demo drives the real `sync-daemon` command as a subprocess over real HTTP, exactly as an
operator would, with a throwaway config and state database under `.demo/`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import click

from sync_daemon.sandbox.cloudiq import CloudiqSandbox
from sync_daemon.sandbox.demo_data import (
    DEMO_CLOUDIQ_CLIENT_ID,
    DEMO_CLOUDIQ_CLIENT_SECRET,
    DEMO_CLOUDIQ_ORGANIZATION_ID,
    DEMO_CLOUDIQ_PASSWORD,
    DEMO_CLOUDIQ_USER,
    DEMO_PARTNER_DOMAIN,
    DEMO_PROOFPOINT_PASSWORD,
    DEMO_PROOFPOINT_USER,
    demo_cloudiq_state,
    demo_proofpoint_state,
    demo_syncro_state,
)
from sync_daemon.sandbox.proofpoint import ProofpointSandbox
from sync_daemon.sandbox.syncro import DEFAULT_TOKEN, SyncroSandbox

DEMO_DIR = Path(".demo")


def write_demo_config(directory: Path, syncro_url: str, proofpoint_urls: list[str],
                      cloudiq_url: str) -> Path:
    """A config for the sandboxes: state in `directory`, warnings-only logs, sandbox secrets."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "sync-daemon.toml"
    stacks = ", ".join(f'"{url}"' for url in proofpoint_urls)
    path.write_text(
        f"""# Written by `make demo`: the daemon against the local sandbox servers.
[state]
url = "sqlite:///{(directory / "sync-daemon.db").resolve()}"

[log]
format = "console"
level = "error"

[syncro]
base_url = "{syncro_url}"
api_token = "{DEFAULT_TOKEN}"
requests_per_minute = 600

[proofpoint]
base_url = [{stacks}]
username = "{DEMO_PROOFPOINT_USER}"
password = "{DEMO_PROOFPOINT_PASSWORD}"
partner_domain = "{DEMO_PARTNER_DOMAIN}"
count = "active_users"
bill_trials = false

[proofpoint.packages.business]
name = "Proofpoint Essentials Business"
cost = "1.50"
retail = "3.00"

[proofpoint.packages.business_plus]
name = "Proofpoint Essentials Business+"
cost = "2.00"
retail = "4.00"

[proofpoint.packages.advanced]
name = "Proofpoint Essentials Advanced"
cost = "2.50"
retail = "5.00"

[proofpoint.packages.professional]
name = "Proofpoint Essentials Professional"
cost = "3.50"
retail = "7.00"

[cloudiq]
base_url = "{cloudiq_url}"
client_id = "{DEMO_CLOUDIQ_CLIENT_ID}"
client_secret = "{DEMO_CLOUDIQ_CLIENT_SECRET}"
username = "{DEMO_CLOUDIQ_USER}"
password = "{DEMO_CLOUDIQ_PASSWORD}"
organization_id = {DEMO_CLOUDIQ_ORGANIZATION_ID}
product_sync_mode = "in_use"
""",
        encoding="utf-8",
    )
    path.chmod(0o600)
    return path


def run_cli(config: Path, *args: str) -> int:
    """Run `sync-daemon --config CONFIG ARGS...` as a subprocess, echoing the command line."""
    command = [sys.executable, "-m", "sync_daemon", "--config", str(config), *args]
    click.secho(f"\n$ sync-daemon --config {config} {' '.join(args)}", bold=True)
    return subprocess.run(command, check=False, env=os.environ.copy()).returncode  # noqa: S603  our own CLI


@click.group()
def main() -> None:
    """Sandbox servers that emulate Syncro (and the vendors) on 127.0.0.1."""


@main.command()
@click.option("--port", default=8180, show_default=True, help="Syncro sandbox port.")
@click.option("--requests-per-minute", default=180, show_default=True,
              help="The sandbox's rate limit, per client IP.")
def serve(port: int, requests_per_minute: int) -> None:
    """Serve the sandbox with the demo data until interrupted."""
    with SyncroSandbox(demo_syncro_state(), port=port,
                       requests_per_minute=requests_per_minute) as syncro:
        click.echo(f"syncro sandbox: {syncro.api_url}  token: {DEFAULT_TOKEN}")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            click.echo("stopped")


@main.command()
@click.option("--directory", type=click.Path(path_type=Path), default=DEMO_DIR,
              show_default=True, help="Where the demo's config and state database go.")
def demo(directory: Path) -> None:
    """Start the sandbox servers, run the daemon against them, show what it did."""
    with SyncroSandbox(demo_syncro_state(), requests_per_minute=600) as syncro, \
            ProofpointSandbox(demo_proofpoint_state(), stacks=("us1", "us2")) as proofpoint, \
            CloudiqSandbox(demo_cloudiq_state()) as cloudiq:
        urls = [proofpoint.stack_url(stack) for stack in ("us1", "us2")]
        click.echo(f"Sandbox Syncro at {syncro.api_url}; Proofpoint stacks at {', '.join(urls)}; "
                   f"Cloud-iQ at {cloudiq.api_url}")
        if directory.exists():
            shutil.rmtree(directory)
        config = write_demo_config(directory, syncro.api_url, urls, cloudiq.api_url)
        steps = [
            ("check",),
            ("mapping", "suggest", "--vendor", "proofpoint", "--apply"),
            ("mapping", "list", "--vendor", "proofpoint"),
            ("sync", "--vendor", "proofpoint", "--dry-run"),
            ("sync", "--vendor", "proofpoint"),
            ("mapping", "suggest", "--vendor", "cloudiq", "--apply"),
            ("mapping", "list", "--vendor", "cloudiq"),
            ("sync", "--vendor", "cloudiq"),
            ("sync",),
            ("history", "--limit", "8"),
            ("status",),
        ]
        codes = [run_cli(config, *step) for step in steps]
        writes = sum(syncro.requests.count(method=m) for m in ("POST", "PUT", "DELETE"))
        click.echo(f"\nSyncro saw {len(syncro.requests)} requests, {writes} of them writes; "
                   "the last sync (both vendors) found nothing to change.")
    # Every step must work; an unmapped customer or a warning is not a failure.
    sys.exit(max(codes))


if __name__ == "__main__":
    main()
