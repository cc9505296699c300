"""Run a command; write its own peak RSS and CPU seconds as JSON, then exit with its code.

Linux counts the memory a child was forked from toward the child's peak RSS (the exec records
the old address space's high-water mark). Forked straight from the benchmark, whose sandboxes
hold the whole generated world, a 170 MB daemon read as 260 MB. This launcher is a small
interpreter of its own, so the command it starts is charged with the launcher's few MB at most.

    python -m bench.rusage OUT.json -- COMMAND [ARG ...]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def main() -> None:
    """Run the command after `--`, wait for it, record its rusage to the file named first."""
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        sys.exit("usage: python -m bench.rusage OUT.json -- COMMAND [ARG ...]")
    out, command = Path(sys.argv[1]), sys.argv[3:]
    child = subprocess.Popen(command)  # inherits stdin, stdout and stderr
    _, status, usage = os.wait4(child.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    out.write_text(json.dumps({
        "exit_code": code,
        "rss_mb": usage.ru_maxrss / 1024,  # Linux reports KiB
        "cpu_s": usage.ru_utime + usage.ru_stime,
    }), encoding="utf-8")
    sys.exit(code if code >= 0 else 1)


if __name__ == "__main__":
    main()
