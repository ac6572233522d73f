"""One call run beside the caller's own work, in a forked child when it needs the CPU.

A thread overlaps a call that waits on the network, not one that computes: the HTCondor
bindings' import (~40 ms of CPU, most of it loading some thirty shared libraries) holds
the interpreter's lock, and the caller's API reads waited for it (``scaler.sh``'s status).
A forked child runs on another core with its own interpreter, so the import, the
collector's answer and the caller's reads overlap. The child hands back a JSON value
through a pipe.

Forking is safe only while the process has one thread (a child gets only the forking
thread, and a lock another thread held stays locked in it); otherwise, and where there
is no fork, the call runs in a thread as before.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from typing import Any, NoReturn

from mmerep.errors import MmerepError


class Background:
    """``fn()`` started now; ``result()`` waits for its value or raises its error.

    With ``fork`` (and only one thread running) ``fn`` runs in a child process and must
    return a JSON value (a tuple comes back as a list); an ``MmerepError`` it raises is
    raised again here with its message and hint. ``close()`` (or leaving a ``with``
    block) stops a child whose answer is no longer wanted.
    """

    def __init__(self, fn: Callable[[], Any], *, fork: bool = False) -> None:
        self._pid: int | None = None
        self._pipe: int | None = None
        self._answer: dict[str, Any] = {}
        self._thread: threading.Thread | None = None
        if fork and hasattr(os, "fork") and threading.active_count() == 1:
            self._fork(fn)
        else:
            self._thread = threading.Thread(target=self._run, args=(fn,), name="background",
                                            daemon=True)
            self._thread.start()

    def __enter__(self) -> Background:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- in a thread -------------------------------------------------------------------

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self._answer["value"] = fn()
        except BaseException as exc:  # raised in result(), in the caller's thread
            self._answer["raise"] = exc

    # -- in a child ----------------------------------------------------------------------

    def _fork(self, fn: Callable[[], Any]) -> None:
        import gc

        read_end, write_end = os.pipe()
        # Pages both processes share are copied when either writes to them, and the
        # cyclic collector writes to every object it visits: frozen objects it leaves
        # alone, and the short-lived child does not collect at all.
        gc.freeze()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            gc.disable()
            os.close(read_end)
            _child(fn, write_end)
        os.close(write_end)
        self._pid, self._pipe = pid, read_end

    def result(self) -> Any:
        if self._thread is not None:
            self._thread.join()
            if "raise" in self._answer:
                raise self._answer["raise"]
            return self._answer["value"]
        if not self._answer:
            self._answer = self._collect()
        answer = self._answer
        if "error" in answer:
            error = answer["error"]
            if error["mmerep"]:
                raise _error_class(error["class"])(error["message"], error["hint"])
            raise RuntimeError(f"{error['class']}: {error['message']}")
        return answer["value"]

    def _collect(self) -> dict[str, Any]:
        assert self._pipe is not None and self._pid is not None
        chunks = []
        try:
            while chunk := os.read(self._pipe, 65536):
                chunks.append(chunk)
        finally:
            os.close(self._pipe)
            self._pipe = None
            _, status = os.waitpid(self._pid, 0)
            self._pid = None
            _unfreeze()
        try:
            answer: dict[str, Any] = json.loads(b"".join(chunks))
        except ValueError:
            how = (f"killed by signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status)
                   else f"exit status {os.waitstatus_to_exitcode(status)}")
            raise MmerepError(f"the background call ended without an answer: {how}") from None
        return answer

    def close(self) -> None:
        """Stop a child that is still running (its answer was not asked for)."""
        if self._pid is None:
            return
        import signal

        os.kill(self._pid, signal.SIGKILL)  # not reaped yet, so it is there (maybe a zombie)
        if self._pipe is not None:
            os.close(self._pipe)
            self._pipe = None
        os.waitpid(self._pid, 0)
        self._pid = None
        _unfreeze()


def _unfreeze() -> None:
    """The child is gone: the parent's objects are collected as before."""
    import gc

    gc.unfreeze()


def _child(fn: Callable[[], Any], write_end: int) -> NoReturn:
    """Run ``fn``, write its answer, and leave at once: no atexit handlers, no flush of
    the parent's buffered output (it would be printed twice)."""
    code = 0
    try:
        try:
            answer: dict[str, Any] = {"value": fn()}
        except BaseException as exc:
            answer = {"error": {"mmerep": isinstance(exc, MmerepError),
                                "class": type(exc).__name__,
                                "message": getattr(exc, "message", str(exc)),
                                "hint": getattr(exc, "hint", None)}}
        data = json.dumps(answer).encode()
        view = memoryview(data)
        while view:
            view = view[os.write(write_end, view):]
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def _error_class(name: str) -> type[MmerepError]:
    from mmerep import errors

    found = getattr(errors, name, None)
    return found if isinstance(found, type) and issubclass(found, MmerepError) else MmerepError
