"""Silencing file descriptor 2 from many streams' threads at once leaves stderr where it was."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from swapwatch.native_logs import native_stderr_silenced


def same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


@contextmanager
def stderr_into(path: Path) -> Iterator[None]:
    """File descriptor 2 points at `path` inside the block, and back afterwards (set in the test
    itself: pytest's own capture re-points descriptor 2 between a fixture and the test)."""
    original = os.dup(2)
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(target, 2)
    os.close(target)
    try:
        yield
    finally:
        os.dup2(original, 2)
        os.close(original)


def test_two_streams_leaving_in_the_order_they_entered_restore_stderr(tmp_path: Path) -> None:
    """A enters, B enters, A leaves, B leaves: B used to restore the /dev/null A had set."""
    stderr_file = tmp_path / "stderr.txt"
    with stderr_into(stderr_file):
        after, seen_while_b_inside = two_streams_overlapping()
    devnull = os.stat(os.devnull)
    assert same_file(seen_while_b_inside, devnull)  # still quiet while one stream is inside
    assert same_file(after, os.stat(stderr_file))
    assert stderr_file.read_bytes() == b"after\n"


def two_streams_overlapping() -> tuple[os.stat_result, os.stat_result]:
    """Where descriptor 2 points after the two streams, and while only B was inside."""
    a_inside, b_inside, a_left = threading.Event(), threading.Event(), threading.Event()
    seen_while_b_inside: list[os.stat_result] = []

    def stream_a() -> None:
        with native_stderr_silenced():
            a_inside.set()
            b_inside.wait(5)
        a_left.set()

    def stream_b() -> None:
        a_inside.wait(5)
        with native_stderr_silenced():
            b_inside.set()
            a_left.wait(5)
            seen_while_b_inside.append(os.fstat(2))
            os.write(2, b"native noise\n")

    threads = [threading.Thread(target=stream_a), threading.Thread(target=stream_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    os.write(2, b"after\n")
    return os.fstat(2), seen_while_b_inside[0]


def test_many_threads_entering_and_leaving_in_any_order_restore_stderr(tmp_path: Path) -> None:
    stderr_file = tmp_path / "stderr.txt"
    with stderr_into(stderr_file):
        after = many_streams_overlapping()
    assert same_file(after, os.stat(stderr_file))
    assert stderr_file.read_bytes() == b"after\n"


def many_streams_overlapping() -> os.stat_result:
    start = threading.Barrier(16)

    def stream(seed: int) -> None:
        rng = random.Random(seed)
        start.wait(5)
        for _ in range(200):
            with native_stderr_silenced():
                os.write(2, b"native noise\n")
                if rng.random() < 0.1:
                    threading.Event().wait(rng.random() / 1000)

    threads = [threading.Thread(target=stream, args=(seed,)) for seed in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    os.write(2, b"after\n")
    return os.fstat(2)


def test_disabled_leaves_stderr_alone(tmp_path: Path) -> None:
    stderr_file = tmp_path / "stderr.txt"
    with stderr_into(stderr_file), native_stderr_silenced(enabled=False):
        os.write(2, b"heard\n")
    assert stderr_file.read_bytes() == b"heard\n"


def test_quiet_for_good_inside_a_silenced_block_stays_quiet_after_it(tmp_path: Path) -> None:
    """The CLI's process-wide quiet, set while a stream silences stderr: native writes stay
    silenced after the block ends, and Python's sys.stderr still reaches the real stderr."""
    script = (
        "import os, sys\n"
        "from swapwatch.native_logs import keep_native_stderr_quiet, native_stderr_silenced\n"
        "with native_stderr_silenced():\n"
        "    keep_native_stderr_quiet()\n"
        "os.write(2, b'native\\n')\n"
        "print('python', file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, timeout=60, check=True
    )
    assert done.stderr == b"python\n"
