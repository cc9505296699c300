"""Recurring invoices: pure planning of the lines the daemon keeps on Syncro schedules."""
