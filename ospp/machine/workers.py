"""Worker threads for fleet operations: run a function over many items, results as they come.

Fleet operations mostly wait (for fsync, for a KMS host), so a few threads overlap the waits;
with several writers in flight the file system also commits their syncs together.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

# Threads per fleet operation.
WORKERS = 8
T = TypeVar("T")
R = TypeVar("R")
_STOP = object()


def parallel(
    items: Iterable[T], work: Callable[[T], Iterable[R]], workers: int = WORKERS
) -> Iterator[R]:
    """``work(item)`` for every item in ``workers`` threads; results as they come.

    At most a few items per worker are queued, so memory does not grow with the fleet. The
    first exception stops the feeding of new items and is raised once the workers are done.
    """
    todo: queue.Queue[Any] = queue.Queue(maxsize=workers * 4)
    done: queue.Queue[tuple[Any, BaseException | None]] = queue.Queue()
    abort = threading.Event()

    def feed() -> None:
        for item in items:
            if abort.is_set():
                break
            todo.put(item)
        for _ in range(workers):
            todo.put(_STOP)

    def worker() -> None:
        while (item := todo.get()) is not _STOP:
            if abort.is_set():
                continue
            try:
                for result in work(item):
                    done.put((result, None))
            except BaseException as exc:  # handed to the caller's thread
                abort.set()
                done.put((_STOP, exc))
        done.put((_STOP, None))

    threads = [threading.Thread(target=feed, daemon=True)]
    threads += [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    finished, failure = 0, None
    while finished < workers:
        result, exc = done.get()
        if exc is not None:
            failure = failure or exc
        elif result is _STOP:
            finished += 1
        elif failure is None:
            yield result
    if failure is not None:
        raise failure
