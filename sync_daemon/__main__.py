"""`python -m sync_daemon` runs the CLI."""

from sync_daemon.cli import main

main()
