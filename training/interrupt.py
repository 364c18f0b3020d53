"""Ctrl-C during training: finish the batch, save the epoch, then stop.

Python's default SIGINT handler raises `KeyboardInterrupt` wherever the
main thread happens to be, which during `model.fit` is inside Keras' step
loop while tf.data threads are calling back into Python (the
`Dataset.from_generator` batch order). The process then unwinds and shuts
the interpreter down under those threads, which can end in a segmentation
fault instead of exit status 130. So while a run trains, SIGINT only sets a
flag (`InterruptRequest`); `StopOnInterrupt`, a Keras callback, sees it at the
next batch end and stops `fit` the way `--time-budget` does: the epoch is
validated, recorded and checkpointed, and `fit` returns normally.

A second Ctrl-C quits at once (`os._exit`, like SIGKILL: every file of the
run directory is written atomically, so only the epoch in progress is lost).
"""

from __future__ import annotations

import os
import signal
import threading

import keras

EXIT_STATUS = 130  # 128 + SIGINT, what a shell reports for Ctrl-C


class InterruptRequest:
    """A context manager under which Ctrl-C (SIGINT) sets `requested` instead
    of raising `KeyboardInterrupt`.

    Outside the main thread, or when SIGINT is ignored (a job started with
    `nohup` or `&`), it changes nothing. The previous handler is restored on exit.

    Example:

    ```python
    with InterruptRequest() as interrupt:
        model.fit(data, callbacks=[StopOnInterrupt(interrupt)])
    interrupt.requested
    # False
    ```
    """

    FIRST = b"\nCtrl-C: stopping after this batch; the epoch is validated and checkpointed (Ctrl-C again to quit at once).\n"
    SECOND = b"\nCtrl-C again: quitting now; the epoch in progress is lost.\n"

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame):
        if self.requested:
            os.write(2, self.SECOND)
            os._exit(EXIT_STATUS)
        self.requested = True
        # os.write, not print: the main thread may be inside a print to the same stream.
        os.write(2, self.FIRST)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            current = signal.getsignal(signal.SIGINT)
            if current is not signal.SIG_IGN:
                self._previous = current
                signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc_info):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
        return False


class StopOnInterrupt(keras.callbacks.Callback):
    """Stops `fit` at the next batch end once `interrupt.requested` is set.

    Set during validation or an epoch's end, it lets that epoch finish and
    stops before the next one.

    Args:
        interrupt: The run's `InterruptRequest`.
    """

    def __init__(self, interrupt):
        super().__init__()
        self.interrupt = interrupt

    def _check(self, *args, **kwargs):
        if self.interrupt.requested:
            self.model.stop_training = True

    on_train_batch_end = on_test_batch_end = on_epoch_end = _check
