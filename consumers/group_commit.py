"""Group commit: concurrent callers within a short window share one sink batch (one file).

Each HTTP request would otherwise cost an S3 object and index writes of its own. Callers block on
``submit`` until their part of the batch is durable; a failed batch fails every caller in it.
"""

from __future__ import annotations

import queue
import threading
import uuid
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from consumers.ingest import IngestResult, IngestSink, Submission

DEFAULT_MAX_BATCH = 500
DEFAULT_MAX_WAIT_S = 0.005


@dataclass(slots=True)
class _Pending:
    submissions: Sequence[Submission]
    future: Future[list[IngestResult]] = field(default_factory=Future)


class GroupCommitter:
    def __init__(
        self,
        sink: IngestSink,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_wait_s: float = DEFAULT_MAX_WAIT_S,
    ) -> None:
        self._sink = sink
        self._max_batch = max_batch
        self._max_wait = max_wait_s
        self._queue: queue.Queue[_Pending | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="pik-group-commit", daemon=True)
        self._thread.start()

    def submit(self, submissions: Sequence[Submission]) -> list[IngestResult]:
        pending = _Pending(submissions)
        self._queue.put(pending)
        return pending.future.result()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            size = len(first.submissions)
            stop = False
            while size < self._max_batch:
                try:
                    nxt = self._queue.get(timeout=self._max_wait)
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
                size += len(nxt.submissions)
            self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[_Pending]) -> None:
        flat = [sub for pending in batch for sub in pending.submissions]
        try:
            results = self._sink.ingest(flat, label=f"http-{uuid.uuid4().hex[:16]}")
        except BaseException as exc:  # every waiting caller must hear about it
            for pending in batch:
                pending.future.set_exception(exc)
            return
        start = 0
        for pending in batch:
            end = start + len(pending.submissions)
            pending.future.set_result(results[start:end])
            start = end
