"""The embedded PostgreSQL used when no ``CHOPMARK_DATABASE_URL`` is set.

``pgserver`` ships real PostgreSQL 16 binaries. Several processes may share one data folder: the
first starts the server, the others attach to it, and the last one to exit stops it.
"""

from __future__ import annotations

import logging
import threading
import warnings
from pathlib import Path

log = logging.getLogger(__name__)

_lock = threading.Lock()
_servers: dict[Path, object] = {}


def embedded_database_url(folder: Path) -> str:
    """Start (or attach to) the embedded server in ``folder`` and return its connection URI."""
    with warnings.catch_warnings():
        # pgserver looks up a per-user runtime folder on import; where XDG_RUNTIME_DIR is unset
        # (root shells, containers) platformdirs warns and falls back to /tmp, which serves.
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
        import pgserver

    folder = folder.resolve()
    with _lock:
        server = _servers.get(folder)
        if server is None:
            folder.mkdir(parents=True, exist_ok=True)
            log.info("starting embedded PostgreSQL in %s", folder)
            server = pgserver.get_server(folder, cleanup_mode="stop")
            _servers[folder] = server
    return server.get_uri()  # type: ignore[attr-defined]


def stop_embedded(folder: Path) -> None:
    """Release this process's handle; the server stops when no process uses it any more."""
    with _lock:
        server = _servers.pop(folder.resolve(), None)
    if server is not None:
        server.cleanup()  # type: ignore[attr-defined]
