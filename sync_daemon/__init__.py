"""sync-daemon: keeps an MSP's PSA billing in step with its vendors."""

__version__ = "0.1.0"
