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
JOIN_TIMEOUT = 30.0  # seconds to wait for the items in hand when a fleet operation stops
T = TypeVar("T")
R = TypeVar("R")
_STOP = object()


def parallel(
    items: Iterable[T],
    work: Callable[[T], Iterable[R]],
    workers: int = WORKERS,
    ordered: bool = False,
    stopping: Callable[[], None] | None = None,
) -> Iterator[R]:
    """``work(item)`` for every item in ``workers`` threads; results as they come, or, when
    ``ordered``, in the order of the items (an item's results together).

    At most a few items per worker are in flight, so memory does not grow with the fleet (in
    order, an item's results wait until those of every earlier item are out). The first
    exception stops the feeding of new items and is raised once the workers are done.
    ``stopping`` is called when the caller stops early (an interrupt) or an exception stops
    the pass, before the items in hand are waited for (to tell their work to give up).
    """
    window = workers * 4
    todo: queue.Queue[Any] = queue.Queue(maxsize=window)
    done: queue.Queue[tuple[Any, BaseException | None]] = queue.Queue()
    abort = threading.Event()
    room = threading.Semaphore(window)  # items fed but not yet handed out, when ordered

    def feed() -> None:
        for index, item in enumerate(items):
            if ordered:
                while not room.acquire(timeout=0.1):
                    if abort.is_set():
                        break
            if abort.is_set():
                break
            todo.put((index, item))
        for _ in range(workers):
            todo.put(_STOP)

    def worker() -> None:
        while (job := todo.get()) is not _STOP:
            if abort.is_set():
                continue
            index, item = job
            try:
                if ordered:
                    done.put(((index, list(work(item))), None))
                else:
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
    waiting: dict[int, list[Any]] = {}  # results of items ahead of the next one, when ordered
    after = 0  # the index of the next item to hand out, when ordered
    completed = told = False
    try:
        while finished < workers:
            result, exc = done.get()
            if exc is not None:
                failure = failure or exc
                if stopping is not None and not told:  # the work in hand gives up now
                    told = True
                    stopping()
            elif result is _STOP:
                finished += 1
            elif failure is not None:
                continue
            elif not ordered:
                yield result
            else:
                waiting[result[0]] = result[1]
                while after in waiting:
                    yield from waiting.pop(after)
                    after += 1
                    room.release()
        completed = failure is None
    finally:
        abort.set()  # the caller stopped early, or a failure: feed nothing more
        if not completed and not told and stopping is not None:
            stopping()
        # Workers finish the item in hand (and skip the rest): once this returns, or an
        # interrupt leaves it, nothing more is done behind the caller's back.
        for t in threads[1:]:
            t.join(JOIN_TIMEOUT)
    if failure is not None:
        raise failure
