"""A call run beside the caller (mmerep.background): in a forked child while the process has
one thread, in a thread otherwise. Each case runs in a fresh interpreter, as a command
does (pytest's own process may have threads of its own)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=60)


def test_the_call_runs_in_another_process_and_its_value_comes_back() -> None:
    out = run("""
        import os
        from mmerep.background import Background
        with Background(lambda: (os.getpid(), os.getppid(), "pool", None), fork=True) as b:
            child, parent, *rest = b.result()
        print(child != os.getpid(), parent == os.getpid(), rest)
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True True ['pool', None]"


def test_with_another_thread_running_it_runs_in_a_thread() -> None:
    out = run("""
        import os, threading
        from mmerep.background import Background
        stop = threading.Event()
        threading.Thread(target=stop.wait, daemon=True).start()
        with Background(os.getpid, fork=True) as b:
            print(b.result() == os.getpid())
        with Background(os.getpid) as b:  # and without fork, always
            print(b.result() == os.getpid())
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True"]


def test_a_product_error_in_the_child_is_raised_with_its_class_message_and_hint() -> None:
    out = run("""
        from mmerep.background import Background
        from mmerep.errors import CondorUnreachable
        def ask():
            raise CondorUnreachable("the collector is silent", hint="is it up?")
        try:
            Background(ask, fork=True).result()
        except CondorUnreachable as exc:
            print(type(exc).__name__, exc.message, exc.hint, sep="|")
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "CondorUnreachable|the collector is silent|is it up?"


def test_any_other_error_is_not_passed_off_as_a_product_error() -> None:
    out = run("""
        from mmerep.background import Background
        from mmerep.errors import MmerepError
        try:
            Background(lambda: 1 / 0, fork=True).result()
        except MmerepError:
            print("product error")
        except RuntimeError as exc:
            print(exc)
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ZeroDivisionError: division by zero"


def test_a_child_that_dies_is_one_clear_error() -> None:
    out = run("""
        import os, signal
        from mmerep.background import Background
        from mmerep.errors import MmerepError
        try:
            Background(lambda: os.kill(os.getpid(), signal.SIGKILL), fork=True).result()
        except MmerepError as exc:
            print(exc.message)
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "the background call ended without an answer: killed by signal 9"


def test_the_parents_buffered_output_is_printed_once() -> None:
    out = run("""
        from mmerep.background import Background
        print("before")  # still in the buffer: stdout is a pipe
        print(Background(lambda: "answer", fork=True).result())
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["before", "answer"]


def test_closing_stops_a_child_whose_answer_is_not_wanted() -> None:
    started = time.monotonic()
    out = run("""
        import os, time
        from mmerep.background import Background
        with Background(lambda: time.sleep(30), fork=True):
            pass
        try:
            os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            print("no child left")
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "no child left"
    assert time.monotonic() - started < 20


def test_the_parents_garbage_is_collected_again_once_the_child_is_done() -> None:
    out = run("""
        import gc
        from mmerep.background import Background
        b = Background(lambda: gc.isenabled(), fork=True)
        frozen = gc.get_freeze_count() > 0
        print(b.result(), frozen, gc.get_freeze_count(), gc.isenabled())
    """)
    assert out.returncode == 0, out.stderr
    # the child did not collect; the parent's objects were frozen while it ran, not after
    assert out.stdout.split() == ["False", "True", "0", "True"]
