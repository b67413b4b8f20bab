"""Lambda entry point for a Kinesis event source mapping: the tap's scale-out path on AWS.

The mapping delivers batches of one shard's records (base64 ``data``); each is de-aggregated
(KPL), decoded by the stream's ``[[tap]]`` binding (``PIK_CONFIG`` bundled with the function, or
the envelope default), and made durable through the same sink as ``pik tap``, with the same
occurrence ids (``kinesis:<stream>:<shard>:<seq>:<sub>``) and file cuts, so a retried batch is
absorbed as redelivery. The mapping checkpoints, not the kit: with ``ReportBatchItemFailures``
the answer names the first record of every shard batch that could not be made durable, and
Lambda retries from there (nothing after it is lost, what was durable is absorbed).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import sys
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import cache
from typing import Any

from consumers.ingest import IngestSink, Submission
from consumers.tap.binding import TapBinding, stream_name
from consumers.tap.decode import RecordDecoder, StreamRecord
from infra.errors import KitError
from infra.schema_registry import RegistryUnavailable
from pik.config import KitConfig
from pik.kit import Kit, build_kit
from pik.logs import configure_logging
from pik.runtime import tune_collector
from pik.settings import Settings
from schemas.envelope import Reason, Rejection
from schemas.registry import SchemaRegistry

log = logging.getLogger(__name__)
tune_collector()  # once per Lambda environment, as `pik` does per process


@dataclass(frozen=True, slots=True)
class _Delivered:
    record: StreamRecord
    problem: str | None = None  # the event record itself was malformed: what was wrong


def _stream_record(raw: dict[str, Any]) -> _Delivered:
    found = raw.get("kinesis")
    kinesis: dict[str, Any] = found if isinstance(found, dict) else {}
    sequence = str(kinesis.get("sequenceNumber", ""))
    shard_id = str(raw.get("eventID", "")).split(":", 1)[0] or "_unknown"
    step = "eventSourceARN"
    try:
        stream = stream_name(str(raw["eventSourceARN"]))
        step = "kinesis.data"
        data = base64.b64decode(kinesis["data"], validate=True)
        step = "kinesis.approximateArrivalTimestamp"
        arrival = datetime.fromtimestamp(float(kinesis["approximateArrivalTimestamp"]), UTC)
        step = "kinesis.partitionKey"
        key = str(kinesis["partitionKey"])
    except (KeyError, ValueError, TypeError, OverflowError, binascii.Error, KitError) as exc:
        # Retrying cannot make it readable: its exact JSON is quarantined instead.
        whole = json.dumps(raw, sort_keys=True, separators=(",", ":"), default=str).encode()
        record = StreamRecord(
            "_unknown" if step == "eventSourceARN" else stream,
            shard_id,
            sequence,
            str(kinesis.get("partitionKey", "")),
            datetime.now(UTC),
            whole,
        )
        return _Delivered(record, f"malformed_event_record: {step}: {exc}"[:500])
    return _Delivered(StreamRecord(stream, shard_id, sequence, key, arrival, data))


def handle_kinesis_event(
    event: dict[str, Any],
    *,
    sink: IngestSink,
    config: KitConfig,
    registry: SchemaRegistry,
    max_event_bytes: int,
    decoders: Callable[[TapBinding], RecordDecoder] | None = None,
) -> dict[str, Any]:
    """A Kinesis event → ``{"batchItemFailures": [...]}`` (empty when all is durable).

    ``decoders`` makes a binding's decoder (the kit's, with its remote registries' caches);
    default: the registry alone. A record whose schema registry cannot answer is reported as
    the batch's failure, after what precedes it is made durable: the mapping retries from it.
    """
    if decoders is None:

        def decoders(binding: TapBinding) -> RecordDecoder:
            return RecordDecoder(binding, registry, max_event_bytes=max_event_bytes)

    batches: dict[tuple[str, str], list[StreamRecord]] = defaultdict(list)
    failures: list[dict[str, str]] = []
    for raw in event.get("Records", []):
        delivered = _stream_record(raw)
        r = delivered.record
        if delivered.problem is not None:  # quarantined, never retried forever
            log.error("malformed Kinesis event record", extra={"sequence": r.sequence_number})
            rejection = Rejection(Reason.UNDECODABLE, delivered.problem)
            bad = RecordDecoder._submission(r, 0, r.partition_key, r.data, rejection, None)
            try:
                sink.ingest([bad], label=f"{r.stream}-{r.shard_id}", at=r.arrival_time)
            except KitError:
                log.exception("malformed record not durable", extra={"stream": r.stream})
                failures.append({"itemIdentifier": r.sequence_number})
            continue
        batches[(r.stream, r.shard_id)].append(r)
    for (stream, shard_id), records in batches.items():
        binding = config.binding_for(stream) or TapBinding(stream=stream)
        decoder = decoders(binding)
        # Any mapping batch may be a retry: a rejected record seen before is then a redelivery
        # (one index lookup per rejected identity), not a second rejection.
        submissions: list[Submission] = []
        blocked: StreamRecord | None = None
        for r in records:
            try:
                subs = decoder.submissions(r)
            except RegistryUnavailable as exc:
                # Not decided: what precedes it is made durable, the mapping retries from it.
                log.warning(
                    "schema registry unavailable; the mapping retries from this record",
                    extra={"stream": stream, "sequence": r.sequence_number, "error": str(exc)},
                )
                blocked = r
                break
            submissions.extend(replace(s, maybe_redelivered=True) for s in subs)
        if submissions:
            try:
                sink.ingest(submissions, label=f"{stream}-{shard_id}", at=records[0].arrival_time)
            except KitError:
                log.exception("batch not durable", extra={"stream": stream, "shard": shard_id})
                failures.append({"itemIdentifier": records[0].sequence_number})
                continue
        if blocked is not None:
            failures.append({"itemIdentifier": blocked.sequence_number})
    return {"batchItemFailures": failures}


@cache
def _built() -> Kit:
    settings = Settings()
    configure_logging(settings.log_level)
    return build_kit(settings)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Kinesis event source mapping (with ``FunctionResponseTypes: [ReportBatchItemFailures]``)."""
    kit = _built()
    try:
        return handle_kinesis_event(
            event,
            sink=kit.sink,
            config=kit.config,
            registry=kit.registry,
            max_event_bytes=kit.settings.max_event_bytes,
            decoders=kit.decoder,  # the kit's remote registries' caches live as long as it
        )
    finally:
        for doc in kit.metrics.drain_emf():
            sys.stdout.write(json.dumps(doc) + "\n")
