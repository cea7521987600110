"""A stop signal reaches the work that should end early, then the server's own handler."""

from __future__ import annotations

import signal
import threading

from service.api.shutdown import chain_stop_signals


def test_a_stop_signal_calls_back_then_the_handler_before_and_undo_restores_it():
    seen: list[str] = []

    def servers_handler(signum, frame):
        seen.append(f"server {signum}")

    before = signal.signal(signal.SIGTERM, servers_handler)
    try:
        undo = chain_stop_signals(lambda: seen.append("stop work"))
        signal.raise_signal(signal.SIGTERM)
        assert seen == ["stop work", f"server {int(signal.SIGTERM)}"]
        undo()
        assert signal.getsignal(signal.SIGTERM) is servers_handler
    finally:
        signal.signal(signal.SIGTERM, before)


def test_outside_the_main_thread_nothing_is_installed():
    before = signal.getsignal(signal.SIGTERM)
    undos = []
    t = threading.Thread(target=lambda: undos.append(chain_stop_signals(lambda: None)))
    t.start()
    t.join()
    undos[0]()
    assert signal.getsignal(signal.SIGTERM) is before
