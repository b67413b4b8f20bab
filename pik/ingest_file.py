"""``pik ingest``: NDJSON lines through the same sink as HTTP, in batches."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from consumers.ingest import IngestResult, Submission
from pik.kit import Kit
from schemas.codec import Provenance
from schemas.envelope import Status, parse_body


def _batches(stream: IO[bytes], size: int) -> Iterator[list[tuple[int, bytes]]]:
    batch: list[tuple[int, bytes]] = []
    for number, line in enumerate(stream, start=1):
        line = line.rstrip(b"\r\n")
        if not line.strip():
            continue
        batch.append((number, line))
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def summarise(results: Iterable[IngestResult], lines: int, dry_run: bool) -> dict[str, Any]:
    """Counts by status and rejection reason."""
    statuses: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for r in results:
        statuses[r.status.value] += 1
        if r.reason:
            reasons[r.reason] += 1
    return {
        "lines": lines,
        "accepted": statuses[Status.ACCEPTED.value],
        "duplicate": statuses[Status.DUPLICATE.value],
        "rejected": statuses[Status.REJECTED.value],
        "reasons": dict(reasons.most_common()),
        "dry_run": dry_run,
    }


def ingest_lines(
    kit: Kit,
    stream: IO[bytes],
    *,
    label: str,
    batch_size: int,
    progress: bool,
    on_result: Callable[[int, IngestResult], None] | None = None,
) -> dict[str, Any]:
    """Ingest NDJSON lines in batches; ``on_result(line number, result)`` sees each outcome."""
    results: list[IngestResult] = []
    lines = 0
    max_bytes = kit.settings.max_event_bytes
    bar = Progress(
        TextColumn("ingesting"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=not progress,
        transient=True,
    )
    with bar:
        task = bar.add_task("ingest", total=None)
        for batch in _batches(stream, batch_size):
            subs = [
                Submission(
                    raw,
                    Provenance(f"{label}:{number}", "file", request_id=label),
                    parse_body(raw, max_bytes),
                    str(number),
                )
                for number, raw in batch
            ]
            batch_results = kit.sink.ingest(subs, label=label)
            if on_result is not None:
                for (number, _), result in zip(batch, batch_results, strict=True):
                    on_result(number, result)
            results.extend(batch_results)
            lines += len(batch)
            bar.update(task, advance=len(batch))
    return summarise(results, lines, kit.sink.dry_run)
