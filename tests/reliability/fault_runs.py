"""Scenario 2, faults: HTTP ingest and a processor drain while ``infra/faults.py`` makes a share
of S3, DynamoDB and SQS calls fail (throttling, 5xx, read timeouts after the write was applied,
connection resets).

The clients retry as the kit configures them (botocore standard mode); what still fails reaches
the HTTP client as a 503, and the client retries the same request (same ``X-Request-Id``). Then,
with injection paused, the backend is audited: every event indexed exactly once, its pointer
resolving to its archived record, no retry counted as a duplicate, and the number of archived
copies of each event (exactly one unless a 503 made the client send it again).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient

from consumers.ingest import Submission
from consumers.processor import AggregateDefinition, Processor, input_hash
from consumers.processor_loop import run_queue
from infra.faults import FaultInjector, FaultPlan
from infra.queue import SqsWorkQueue
from pik.http import create_app
from pik.kit import Kit
from schemas.codec import Provenance
from schemas.envelope import parse_body
from tests.reliability.reshard import split_first, wait_active
from tests.reliability.support import (
    KINESIS_LOCAL,
    KIT_RETRIES,
    MOTO,
    Figures,
    audit,
    identity_of,
    kit_with,
    known_event,
    settings_for,
    timed,
)

HTTP_RETRIES = 40
MAX_TAP_STARTS = 20
DEFINITIONS = (
    AggregateDefinition("daily_event_count"),
    AggregateDefinition("daily_steps", kind="sum", field="steps"),
    AggregateDefinition("max_n", kind="max", field="n"),
)


@dataclass
class Delivery:
    request_id: str
    bodies: list[bytes]
    batch: bool
    attempts: int = 0
    final_code: int = 0
    statuses: tuple[str, ...] = ()


def _post(client: TestClient, d: Delivery, codes: Counter[int]) -> None:
    """Send one request until it is answered without a 5xx, as a careful client would."""
    path = "/ingest/batch" if d.batch else "/ingest"
    body = b"\n".join(d.bodies) if d.batch else d.bodies[0]
    for attempt in range(HTTP_RETRIES):
        d.attempts += 1
        try:
            response = client.post(path, content=body, headers={"x-request-id": d.request_id})
        except Exception:  # a transport error: retry, as over a real network
            codes[-1] += 1
            time.sleep(min(0.5, 0.01 * 2**attempt))
            continue
        codes[response.status_code] += 1
        if response.status_code < 500:
            doc = response.json()
            d.final_code = response.status_code
            results = doc["results"] if d.batch else [doc]
            d.statuses = tuple(str(r.get("status")) for r in results)
            return
        time.sleep(min(0.5, 0.01 * 2**attempt))


def http_ingest_under_faults(
    endpoint_url: str,
    *,
    events: int,
    rate: float = 0.15,
    seed: int = 1,
    max_attempts: int = KIT_RETRIES,
    batch_size: int = 20,
    batch_share: float = 0.3,
    concurrency: int = 8,
) -> Figures:
    """``events`` known events over HTTP (singles and NDJSON batches) with faults injected into
    every S3 and DynamoDB attempt at ``rate``; ``max_attempts`` is botocore's retry count."""
    label = f"faults: HTTP ingest, {rate:.0%} of S3/DynamoDB calls, boto retries {max_attempts}"
    figures = Figures(label)
    settings = settings_for(endpoint_url)
    injector = FaultInjector(
        FaultPlan(rate=rate, services=frozenset({"s3", "dynamodb"}), seed=seed)
    )
    kit = kit_with(settings, max_attempts=max_attempts, injector=injector)
    with injector.paused():
        kit.bootstrap().run(demo_stream=False)
    run = uuid.uuid4().hex[:8]
    bodies = [known_event(run, n) for n in range(events)]
    expected = {identity_of(b) for b in bodies}
    batched = int(events * batch_share)
    deliveries = [
        Delivery(f"{run}-b{i}", list(bodies[i : min(i + batch_size, batched)]), True)
        for i in range(0, batched, batch_size)
    ] + [Delivery(f"{run}-s{i}", [bodies[i]], False) for i in range(batched, events)]
    codes: Counter[int] = Counter()
    app = create_app(kit)
    with timed(figures):
        with (
            TestClient(app, raise_server_exceptions=False) as client,
            ThreadPoolExecutor(concurrency) as pool,
        ):
            list(pool.map(lambda d: _post(client, d, codes), deliveries))
        app.state.committer.close()
        with injector.paused():
            result = audit(kit, expected)
    statuses: Counter[str] = Counter(s for d in deliveries for s in d.statuses)
    unanswered = [d.request_id for d in deliveries if not d.final_code]
    figures.tried = events
    figures.survived = result.indexed_once - len(result.duplicates_indexed)
    figures.lost = result.lost
    if result.rollups_off:
        figures.fail(f"rollups differ from a recount of the archive: {result.rollups_off[:3]}")
    if unanswered:
        figures.fail(f"{len(unanswered)} requests never answered below 500: {unanswered[:5]}")
    if statuses.keys() - {"ACCEPTED"}:
        figures.fail(f"a retried event was answered as something else: {dict(statuses)}")
    if result.duplicates_indexed:
        figures.fail(f"retries indexed as duplicates: {result.duplicates_indexed[:5]}")
    if result.unexpected:
        figures.fail(f"{result.unexpected} identities indexed that nobody sent")
    server_errors = sum(n for code, n in codes.items() if code >= 500)
    extra_copies = sum(n for copies, n in result.archive_copies.items() if copies > 1)
    if server_errors == 0 and extra_copies:
        figures.fail(f"{extra_copies} events archived twice though no request was sent twice")
    figures.notes.update(
        {
            "faults": injector.report(),
            "http_answers": {str(k): v for k, v in sorted(codes.items())},
            "http_requests": sum(d.attempts for d in deliveries),
            "audit": result.to_json(),
        }
    )
    return figures


# -- the processor ---------------------------------------------------------------------------
def replay_messages(kit: Kit, bodies: list[bytes], label: str) -> list[str]:
    """Ingest ``bodies`` directly through the sink and make one replay message per event."""
    subs = [
        Submission(b, Provenance(f"{label}:{i}", "http"), parse_body(b), str(i))
        for i, b in enumerate(bodies)
    ]
    messages = []
    for start in range(0, len(subs), 500):
        chunk = subs[start : start + 500]
        for sub, result in zip(
            chunk, kit.sink.ingest(chunk, label=f"{label}-{start}"), strict=True
        ):
            doc = json.loads(sub.raw)
            assert result.archive is not None
            messages.append(
                json.dumps(
                    {
                        "replay_id": f"rp-{label}",
                        "event_id": result.event_id,
                        "entity_id": doc["entity_id"],
                        "event_time": doc["event_time"],
                        "archive": result.archive.to_json(),
                    }
                )
            )
    return messages


def enqueue(kit: Kit, queue_url: str, messages: list[str]) -> None:
    sqs = kit.clients.sqs()
    for start in range(0, len(messages), 10):
        entries = [
            {"Id": str(i), "MessageBody": body}
            for i, body in enumerate(messages[start : start + 10])
        ]
        out = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        if out.get("Failed"):
            raise RuntimeError(f"enqueue failed: {out['Failed']}")


def queue_depth(kit: Kit, queue_url: str) -> int:
    attributes = kit.clients.sqs().get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def expected_aggregates(
    bodies: list[bytes], definitions: tuple[AggregateDefinition, ...]
) -> dict[tuple[str, str, str], tuple[float | None, str, int]]:
    """From scratch: (entity, day, metric) → (value, input hash, input count)."""
    windows: dict[tuple[str, str], dict[str, dict[str, Any]]] = defaultdict(dict)
    for body in bodies:
        doc = json.loads(body)
        windows[(doc["entity_id"], doc["event_time"][:10])][identity_of(body)] = doc
    out: dict[tuple[str, str, str], tuple[float | None, str, int]] = {}
    for (entity, day), events in windows.items():
        for d in definitions:
            ids = sorted(e for e, doc in events.items() if d.applies_to(doc))
            value = d.compute([events[e]["payload"] for e in ids])
            out[(entity, day, d.name)] = (value, input_hash(d, ids), len(ids))
    return out


def check_aggregates(
    kit: Kit,
    bodies: list[bytes],
    definitions: tuple[AggregateDefinition, ...],
    figures: Figures,
) -> None:
    """Each aggregate's latest version equals the from-scratch value; its version chain is
    1, 2, 3… with predecessors linked and no version repeating its predecessor's inputs."""
    store = kit.aggregates()
    expected = expected_aggregates(bodies, definitions)
    entities = sorted({entity for entity, _, _ in expected})
    chains: dict[tuple[str, str, str], list[Any]] = defaultdict(list)
    for entity in entities:
        for version in store.versions(entity):
            chains[(entity, version.day, version.metric)].append(version)
    figures.tried = len(expected)
    wrong = 0
    for key, (value, digest, count) in sorted(expected.items()):
        chain = sorted(chains.get(key, []), key=lambda v: v.version)
        if not chain:
            wrong += 1
            figures.fail(f"{key}: no aggregate version")
            continue
        latest = chain[-1]
        if (latest.value, latest.input_hash, latest.input_count) != (value, digest, count):
            wrong += 1
            figures.fail(
                f"{key}: latest v{latest.version} = {latest.value} ({latest.input_count})"
                f", from scratch {value} ({count})"
            )
            continue
        numbers = [v.version for v in chain]
        if numbers != list(range(1, len(chain) + 1)):
            figures.fail(f"{key}: version numbers {numbers}")
        for older, newer in itertools.pairwise(chain):
            if newer.previous_version != older.version or newer.input_hash == older.input_hash:
                figures.fail(f"{key}: v{newer.version} does not follow v{older.version}")
        figures.survived += 1
    figures.lost += wrong
    figures.notes["versions"] = dict(Counter(len(c) for c in chains.values()))


def processor_under_faults(
    endpoint_url: str,
    *,
    events: int,
    rate: float = 0.15,
    seed: int = 2,
    max_attempts: int = KIT_RETRIES,
    deadline_s: float = 120.0,
) -> Figures:
    """A processor drain with faults in S3, DynamoDB and SQS: replay messages for ``events``
    events (each sent twice, as two replays would), drained until the queue is empty; then every
    aggregate equals a from-scratch recomputation, and nothing is in the dead-letter queue."""
    figures = Figures(f"faults: processor drain (aggregates), {rate:.0%} of S3/DynamoDB/SQS calls")
    settings = settings_for(endpoint_url)
    clean = kit_with(settings)
    clean.bootstrap().run(demo_stream=False)
    run = uuid.uuid4().hex[:8]
    bodies = [known_event(run, n, entities=5) for n in range(events)]
    messages = replay_messages(clean, bodies, run)
    sqs = clean.clients.sqs()
    queue_url = sqs.get_queue_url(QueueName=settings.replay_queue)["QueueUrl"]
    dlq_url = sqs.get_queue_url(QueueName=settings.replay_dlq)["QueueUrl"]
    enqueue(clean, queue_url, messages + messages)
    plan = FaultPlan(rate=rate, services=frozenset({"s3", "dynamodb", "sqs"}), seed=seed)
    injector = FaultInjector(plan)
    faulty = kit_with(settings, max_attempts=max_attempts, injector=injector)
    processor = Processor(
        faulty.index,
        faulty.archive,
        faulty.aggregates(),
        faulty.clock,
        faulty.metrics,
        definitions=DEFINITIONS,
    )
    # A lost ReceiveMessage answer hides its messages for the visibility timeout: keep it short.
    queue = SqsWorkQueue(faulty.clients.sqs(), queue_url, visibility_timeout_s=2)
    passes = handled = failed = 0
    with timed(figures):
        stop_at = time.monotonic() + deadline_s
        while time.monotonic() < stop_at:
            summary = run_queue(processor, queue, once=True, wait_s=1, retry_base_s=0.2)
            passes += 1
            handled += summary.messages
            failed += summary.failed
            with injector.paused():
                if queue_depth(clean, queue_url) == 0:
                    break
            time.sleep(0.5)
        with injector.paused():
            left = queue_depth(clean, queue_url)
            dead = queue_depth(clean, dlq_url)
            check_aggregates(clean, bodies, DEFINITIONS, figures)
    if left:
        figures.fail(f"{left} messages still queued after {deadline_s:.0f} s")
    if dead:
        figures.lost += dead
        figures.fail(f"{dead} messages in the dead-letter queue")
    figures.notes.update(
        {
            "faults": injector.report(),
            "messages": len(messages) * 2,
            "receives": handled,
            "failed_and_retried": failed,
            "drain_passes": passes,
        }
    )
    return figures


# -- the tap ---------------------------------------------------------------------------------
def tap_under_faults(
    endpoint_url: str,
    *,
    records: int,
    rate: float = 0.15,
    seed: int = 3,
    max_attempts: int = KIT_RETRIES,
    kinesis_endpoint: str | None = None,
    reshard: bool = False,
    get_limit: int | None = None,
) -> Figures:
    """``records`` known events on a 2-shard stream (a third of them KPL-aggregated) drained by
    the tap with faults in Kinesis, S3 and DynamoDB: each indexed exactly once, never as a
    duplicate of itself. A tap that gives up is started again, as a supervisor would.

    ``kinesis_endpoint`` puts the stream on another Kinesis (npm kinesis-local); ``reshard``
    then splits a shard once half the records are written, so the faulty tap also lists
    closed parents and children, reads parents to their end and follows ``ChildShards``.
    ``get_limit`` caps the records per GetRecords call (more calls, so more Kinesis faults).
    """
    from consumers.tap.binding import binding_from_table
    from pik.taps import tap_options
    from schemas.kpl import aggregate

    if reshard and not kinesis_endpoint:
        raise ValueError("resharding needs a faithful Kinesis (moto keeps writing to parents)")
    label = f"faults: tap drain, {rate:.0%} of Kinesis/S3/DynamoDB calls"
    backend = KINESIS_LOCAL if kinesis_endpoint else MOTO
    figures = Figures(label + (", after a split" if reshard else ""), backend=backend)
    settings = settings_for(endpoint_url)
    clean = kit_with(settings, kinesis_endpoint=kinesis_endpoint)
    clean.bootstrap().run(demo_stream=False)
    kinesis = clean.clients.kinesis()
    stream = f"faults-{uuid.uuid4().hex[:8]}"
    kinesis.create_stream(StreamName=stream, ShardCount=2)
    wait_active(kinesis, stream)
    run = uuid.uuid4().hex[:8]
    bodies = [known_event(run, n) for n in range(records)]
    entries: list[dict[str, Any]] = []
    plain = records * 2 // 3
    for n, body in enumerate(bodies[:plain]):
        entries.append({"Data": body, "PartitionKey": f"pk-{n % 11}"})
    group = bodies[plain:]
    for start in range(0, len(group), 5):
        part = [(f"pk-{start % 11}", b) for b in group[start : start + 5]]
        entries.extend({"Data": a.data, "PartitionKey": a.partition_key} for a in aggregate(part))
    half = len(entries) // 2 if reshard else len(entries)
    for start in range(0, len(entries), 500):
        if start <= half < start + 500 and reshard:
            kinesis.put_records(StreamName=stream, Records=entries[start:half])
            split_first(kinesis, stream)
            kinesis.put_records(StreamName=stream, Records=entries[half : start + 500])
            continue
        kinesis.put_records(StreamName=stream, Records=entries[start : start + 500])
    plan = FaultPlan(rate=rate, services=frozenset({"kinesis", "s3", "dynamodb"}), seed=seed)
    injector = FaultInjector(plan)
    faulty = kit_with(
        settings, max_attempts=max_attempts, injector=injector, kinesis_endpoint=kinesis_endpoint
    )
    binding = binding_from_table({"stream": stream})
    options = tap_options(lease_ms=2_000)
    if get_limit is not None:
        options = dataclasses.replace(
            options, reader=dataclasses.replace(options.reader, limit=get_limit)
        )
    restarts = 0
    totals: dict[str, Any] = {}
    with timed(figures):
        for _ in range(MAX_TAP_STARTS):
            try:
                worker = faulty.tap_worker(binding, options=options)
                totals = worker.run(once=True).totals()
                break
            except Exception as exc:  # the process would exit non-zero and be restarted
                restarts += 1
                cause = f"{type(exc).__name__}: {str(exc)[:200]}"
                figures.notes.setdefault("restart_causes", []).append(cause)
                time.sleep(2.5)  # its leases expire
        else:
            figures.fail(f"the tap failed {restarts} times; last: {cause}")
        with injector.paused():
            result = audit(clean, {identity_of(b) for b in bodies})
    figures.tried = records
    figures.survived = result.indexed_once - len(result.duplicates_indexed)
    figures.lost = result.lost
    if result.rollups_off:
        figures.fail(f"rollups differ from a recount of the archive: {result.rollups_off[:3]}")
    if result.duplicates_indexed:
        figures.fail(f"redeliveries indexed as duplicates: {result.duplicates_indexed[:5]}")
    figures.notes.update(
        {
            "faults": injector.report(),
            "kinesis_records": len(entries),
            "shards": [s["ShardId"] for s in kinesis.list_shards(StreamName=stream)["Shards"]],
            "tap_restarts": restarts,
            "tap_totals": {k: v for k, v in totals.items() if k != "reasons"},
            "audit": result.to_json(),
        }
    )
    return figures
