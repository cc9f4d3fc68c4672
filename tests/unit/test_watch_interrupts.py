"""``watch_interrupts``: Ctrl-C told apart while another library's SIGINT handler holds it (Ray Tune
stops its trials and returns; Ray Train aborts and raises SystemExit), and the handler found on
entry put back (both leave theirs installed)."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from raymlops.ray_session import watch_interrupts


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0


def test_a_signal_handled_by_someone_else_is_seen_and_the_handler_put_back() -> None:
    before, fds = signal.getsignal(signal.SIGINT), _open_fds()
    calls = []
    with watch_interrupts() as arrived:
        # like Ray Tune: a handler of its own that swallows Ctrl-C, left installed
        signal.signal(signal.SIGINT, lambda *_: calls.append(1))
        assert not arrived()
        signal.raise_signal(signal.SIGINT)
        assert arrived() and calls == [1]
    assert arrived() and signal.getsignal(signal.SIGINT) is before and _open_fds() == fds


def test_a_handler_that_exits_like_ray_train_is_told_apart_from_a_failure() -> None:
    def abort(*_: object) -> None:  # Ray Train's: abort the run, then sys.exit
        raise SystemExit(0)

    with pytest.raises(SystemExit), watch_interrupts() as arrived:
        signal.signal(signal.SIGINT, abort)
        signal.raise_signal(signal.SIGINT)
    assert arrived()
    with pytest.raises(SystemExit), watch_interrupts() as arrived:  # an exit of its own: no Ctrl-C
        raise SystemExit(1)
    assert not arrived()


def test_no_signal_and_other_signals_are_not_ctrl_c() -> None:
    before = signal.getsignal(signal.SIGUSR1)
    signal.signal(signal.SIGUSR1, lambda *_: None)
    try:
        with watch_interrupts() as arrived:
            signal.raise_signal(signal.SIGUSR1)
        assert not arrived()
    finally:
        signal.signal(signal.SIGUSR1, before)


def test_outside_the_main_thread_it_says_no() -> None:
    out = []

    def run() -> None:
        with watch_interrupts() as arrived:
            out.append(arrived())

    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert out == [False]
