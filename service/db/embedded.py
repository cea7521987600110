"""The embedded PostgreSQL used when no ``CHOPMARK_DATABASE_URL`` is set.

``pgserver`` ships real PostgreSQL 16 binaries. Several processes may share one data folder: the
first starts the server, the others attach to it, and the last one to exit stops it.
"""

from __future__ import annotations

import json
import logging
import threading
import warnings
from pathlib import Path

from service.atomic_files import write_atomically

log = logging.getLogger(__name__)

HANDLES_FILE = ".handle_pids.json"  # pgserver's list of the processes using the server
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
            forget_dead_handles(folder)
            log.info("starting embedded PostgreSQL in %s", folder)
            server = pgserver.get_server(folder, cleanup_mode="stop")
            _servers[folder] = server
    return server.get_uri()  # type: ignore[attr-defined]


def stop_embedded(folder: Path) -> None:
    """Release this process's handle; the server stops when no process uses it any more."""
    with _lock:
        server = _servers.pop(folder.resolve(), None)
    if server is not None:
        forget_dead_handles(folder.resolve())
        server.cleanup()  # type: ignore[attr-defined]


def forget_dead_handles(folder: Path) -> list[int]:
    """Drop processes that died without letting go (killed, crashed) from pgserver's list of
    the server's users, so that the last live one stops the server again; returns them.

    pgserver stops the server only when the exiting process is the last one listed, and never
    removes a process that died: one kill -9 would otherwise keep PostgreSQL running for good.
    """
    import psutil

    path = folder / HANDLES_FILE
    try:
        pids = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(pids, list):
        return []
    dead = [p for p in pids if not (isinstance(p, int) and psutil.pid_exists(p))]
    if dead:
        alive = [p for p in pids if p not in dead]
        write_atomically(path, json.dumps(alive).encode())
        log.info("embedded PostgreSQL: forgot %d process(es) that died holding it", len(dead))
    return dead
