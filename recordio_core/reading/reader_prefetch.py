"""Reading ahead: `prefetched` makes an epoch's batches on a producer thread (records read,
batches submitted for decoding) at most `size` batches ahead of the consumer."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from recordio_core.reading.reader_decode import Batch, _Pending
from recordio_core.reading.reader_plan import _Item


@dataclass(frozen=True)
class _Failure:
    exc: BaseException


_END = object()


def prefetched(
    batches: Callable[[], Iterable[tuple[list[_Item], int]]],
    submit: Callable[[list[_Item], int, int], _Pending],
    size: int,
) -> Iterator[Batch]:
    """The decoded batches of `batches()` (iterated on a producer thread, each batch handed to
    `submit(items, pad, batch_no)`), in order, at most `size` batches ahead. An exception on
    the producer is raised here; closing the iterator stops the producer and cancels the
    batches not taken."""
    q: queue.Queue[Any] = queue.Queue(maxsize=size)
    stop = threading.Event()

    def put(obj: Any) -> None:
        while not stop.is_set():
            try:
                q.put(obj, timeout=0.05)
                return
            except queue.Full:
                continue

    def produce() -> None:
        try:
            for batch_no, (items, pad) in enumerate(batches()):
                if stop.is_set():
                    return
                put(submit(items, pad, batch_no))
        except BaseException as exc:  # handed to the consumer, raised there
            put(_Failure(exc))
        finally:
            put(_END)

    producer = threading.Thread(target=produce, name="recordio-read", daemon=True)
    producer.start()
    try:
        while True:
            obj = q.get()
            if obj is _END:
                return
            if isinstance(obj, _Failure):
                raise obj.exc
            yield obj.result()
    finally:
        stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                obj = q.get_nowait()
                if isinstance(obj, _Pending):
                    obj.cancel()
        producer.join()
