"""Stopping a run between two steps on SIGINT (Ctrl-C) or SIGTERM, never inside a compiled kernel.

    with StopSignals() as stop:
        ...  stop.check() between steps raises Stopped once a signal has come
    except (Stopped, SystemError) as problem: stop_of(problem) -> the Stopped behind it, or None

A process-wide setting made only inside the `with` block, by the training script that asks for it.
"""

import signal

# What a message calls each signal, and the exit status a shell reports for a process it stopped
# (128 + the signal's number).
STOP_SIGNALS = {signal.SIGINT: ("interrupted (Ctrl-C)", 130), signal.SIGTERM: ("terminated (SIGTERM)", 143)}


class Stopped(Exception):
    """A stop signal (SIGINT, SIGTERM) took effect; `signum` says which, `status` the exit status."""

    def __init__(self, signum):
        super().__init__(STOP_SIGNALS[signum][0])
        self.signum = signum
        self.status = STOP_SIGNALS[signum][1]


class StopSignals:
    """Signal handlers that only take note, so that no exception is ever raised inside a
    compiled kernel (which numba reports as a SystemError): training calls `check()` between
    steps and stops there. A second signal stops at once, as a user pressing Ctrl-C again expects.
    """

    def __init__(self):
        self.signum = None
        self.previous = {}

    def __enter__(self):
        for signum in STOP_SIGNALS:
            # A signal ignored at start-up stays ignored (as Python itself leaves it): a shell
            # starts background jobs with SIGINT ignored, so that Ctrl-C is not for them.
            if signal.getsignal(signum) is not signal.SIG_IGN:
                self.previous[signum] = signal.signal(signum, self.note)
        return self

    def __exit__(self, *exc_info):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def note(self, signum, frame):
        if self.signum is not None:
            raise Stopped(signum)
        self.signum = signum

    def check(self):
        """Raise Stopped if a stop signal has come since the block began."""
        if self.signum is not None:
            raise Stopped(self.signum)


def stop_of(error):
    """The Stopped exception behind `error`, or None: a second signal's Stopped raised while a
    compiled kernel ran reaches Python as a SystemError whose cause it is."""
    while error is not None and not isinstance(error, Stopped):
        error = error.__cause__ or error.__context__
    return error
