"""Binding notifiers: counters a program signals with ``ret #PIO_NOTIFY_n``.

A notifier is the engine's ioeventfd.  On Linux it is a real ``eventfd``
(``os.eventfd``), so a consumer can block on it in a thread, or register
:meth:`Notifier.fileno` with ``selectors``/``asyncio`` -- exactly as a VMM
waits on a KVM ioeventfd.  Elsewhere a pipe plus a counter gives the same
semantics.  Either way the semantics are the eventfd counter's: every
signal adds 1; a read returns the sum since the last read and resets it, so
N notifications before the consumer runs coalesce into one wake-up that
reports N (``eventfd_signal(ctx, 1)`` in KVM's ioeventfd does the same).
"""

from __future__ import annotations

import os
import select
import threading

# os.eventfd exists on Linux with Python >= 3.10.
HAVE_EVENTFD = hasattr(os, "eventfd")


class Notifier:
    """One counter-semantics wake-up source; ``signal`` adds, ``read`` drains."""

    __slots__ = ("name", "signals", "_fd", "_wfd", "_lock", "_pending", "signal", "__weakref__")

    def __init__(self, name: str = "", *, portable: bool = False):
        self.name = name
        self.signals = 0           # total signals ever sent (for statistics)
        self._lock = threading.Lock()
        self._pending = 0
        if HAVE_EVENTFD and not portable:
            self._fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            self._wfd = -1
            self.signal = self._signal_eventfd
        else:
            self._fd, self._wfd = os.pipe()
            os.set_blocking(self._fd, False)
            self.signal = self._signal_pipe

    @property
    def kind(self) -> str:
        """``"eventfd"`` or ``"pipe"`` (the portable fallback)."""
        return "pipe" if self._wfd >= 0 else "eventfd"

    def fileno(self) -> int:
        """The descriptor that becomes readable while a count is pending."""
        return self._fd

    def _signal_eventfd(self, n: int = 1) -> None:
        self.signals += n
        os.eventfd_write(self._fd, n)

    def _signal_pipe(self, n: int = 1) -> None:
        with self._lock:  # held across the write: a byte is queued iff a count is pending
            self.signals += n
            if self._pending == 0:  # one byte per wake-up, not per signal: never fills
                os.write(self._wfd, b"\1")
            self._pending += n

    def read(self) -> int:
        """Return the count signalled since the last read (0 if none); never blocks."""
        if self._wfd < 0:
            try:
                return os.eventfd_read(self._fd)
            except BlockingIOError:
                return 0
        with self._lock:
            n, self._pending = self._pending, 0
            if n:
                try:
                    os.read(self._fd, 64)
                except BlockingIOError:
                    pass
        return n

    def wait(self, timeout: float | None = None) -> int:
        """Block until a count is pending (or ``timeout`` seconds pass); return and reset it."""
        while True:
            n = self.read()
            if n:
                return n
            ready, _, _ = select.select([self._fd], [], [], timeout)
            if not ready:
                return 0

    def close(self) -> None:
        """Close the descriptors (idempotent)."""
        for fd in (self._fd, self._wfd):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._fd = self._wfd = -1

    def __del__(self):
        self.close()

    def __repr__(self) -> str:
        return f"<Notifier {self.name!r} {self.kind} fd={self._fd} signals={self.signals}>"
