"""Named pause points, so crash tests can kill a build exactly where it hurts.

With `THREAD_FAULT_PAUSE_AT=<point>` and `THREAD_FAULT_MARKER=<file>` set, a build that reaches
that point writes its pid to the marker file and waits until the file is removed. A test then
SIGKILLs the process group (a crash) or removes the marker (the build carries on). Unset, a
checkpoint costs one dictionary lookup. Test instrumentation, not configuration: it is read at
the moment of the checkpoint, never at import.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

PAUSE_AT = "THREAD_FAULT_PAUSE_AT"
MARKER = "THREAD_FAULT_MARKER"
POINTS = ("raw-commit:<system>/<entity>", "dbt-run", "twin-write", "publish-rename", "publish-mirror")


def checkpoint(point: str) -> None:
    if os.environ.get(PAUSE_AT) != point:
        return
    marker = Path(os.environ[MARKER])
    marker.write_text(str(os.getpid()))
    while marker.exists():
        time.sleep(0.1)
