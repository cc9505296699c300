"""Approve before write: under `approval = "required"` a pass keeps its plan (`pending`) and a
person decides on it (`decide`: `plan approve`, `plan reject`).

Nothing is imported here: `sync_daemon.jobs` uses `pending`, and `decide` uses `jobs`.
"""
