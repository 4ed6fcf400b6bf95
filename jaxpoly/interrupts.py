"""Ctrl-C that is not lost: a flag the long host loops (the region search, the subdivision stages) read
between steps, besides the ``KeyboardInterrupt`` Python raises."""

from __future__ import annotations

import signal
import sys
import threading


class CtrlC:
    """Whether Ctrl-C was pressed while installed.

    Its ``KeyboardInterrupt`` alone can be lost: raised inside a finalizer or garbage-collection callback
    that the interpreter runs at that moment (JAX's, when compilations release its caches), it is printed
    as "Exception ignored in ..." and dropped, and a cold enumeration kept searching after one Ctrl-C in
    about 1 run of 10. Installed only over Python's own handler, on the main thread (elsewhere ``seen``
    stays False and nothing changes); the exception is still raised as before, and a dropped one is not
    printed (``sys.unraisablehook``): the loops reading ``seen`` stop instead.
    """

    def __init__(self):
        self.seen = False
        self._previous = None
        self._previous_hook = None

    def install(self) -> "CtrlC":
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            self._previous = signal.signal(signal.SIGINT, self._handler)
            self._previous_hook, sys.unraisablehook = sys.unraisablehook, self._unraisable
        return self

    def restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            sys.unraisablehook = self._previous_hook
            self._previous = None

    def check(self) -> None:
        """Raise the ``KeyboardInterrupt`` that a Ctrl-C since :meth:`install` may have lost."""
        if self.seen:
            raise KeyboardInterrupt

    def __enter__(self) -> "CtrlC":
        return self.install()

    def __exit__(self, *exc) -> None:
        self.restore()

    def _handler(self, signum, frame):
        self.seen = True
        raise KeyboardInterrupt

    def _unraisable(self, unraisable) -> None:
        if not (self.seen and unraisable.exc_type is KeyboardInterrupt):
            self._previous_hook(unraisable)
