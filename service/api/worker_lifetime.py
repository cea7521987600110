"""Worker processes of `chopmark serve --workers N` end with their parent.

uvicorn's supervisor restarts a worker that dies, but a supervisor killed outright (kill -9, an
OOM kill) leaves its workers running, re-parented to PID 1 and holding the port, so the next
start fails. On Linux each worker asks the kernel for SIGTERM when its parent dies, and shuts
down as on any SIGTERM."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys

log = logging.getLogger(__name__)

ENV = "CHOPMARK_WORKER_OF"  # set by serve to its own pid when it runs several workers
_PR_SET_PDEATHSIG = 1


def end_with_parent() -> bool:
    """In a worker whose supervisor is still the parent: SIGTERM when it dies. True if set."""
    parent = os.environ.get(ENV)
    if not parent or not sys.platform.startswith("linux") or str(os.getppid()) != parent:
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() != int(parent):  # the parent died before the request: end now
        os.kill(os.getpid(), signal.SIGTERM)
    return True
