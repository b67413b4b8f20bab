"""What the reliability scenarios share: figures, known events, and the after-the-fact audit.

The audit reads the truth back from the backend the way an investigator would (the archive's
Avro files and the index table), never from what the kit answered, so a scenario's "lost"
figure counts what is really missing.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

from infra.aws import AwsClients, AwsConfig
from infra.clock import Clock
from infra.faults import FaultInjector
from infra.index import IDENTITY_ITEM, OCCURRENCE_PREFIX
from infra.index_layout import restore
from infra.keys import QUARANTINE_PREFIX, RAW_PREFIX
from infra.rollups import ROLLUP_PREFIX, Rollup, merge_rollups, recount
from pik.kit import Kit, build_kit
from pik.settings import Settings
from schemas.codec import ArchiveRecord, decode_archive
from schemas.envelope import Event, format_time, parse_body
from schemas.identity import event_id

PIK = str(Path(sys.executable).with_name("pik"))
MOTO = "moto"
KINESIS_LOCAL = "kinesis-local"  # npm kinesis-local for Kinesis; S3, DynamoDB, SQS on moto
KIT_RETRIES = AwsConfig().max_attempts  # what the kit configures: botocore retries per call
RESOURCE_FIELDS = (
    "bucket",
    "events_table",
    "leases_table",
    "replay_jobs_table",
    "aggregates_table",
    "replay_queue",
    "replay_dlq",
    "demo_stream",
)


# -- figures ----------------------------------------------------------------------------------
@dataclass
class Figures:
    """One scenario's line in the table: what was tried, what came through, what was lost."""

    scenario: str
    backend: str = MOTO  # where Kinesis was: moto, or kinesis-local (S3/DynamoDB/SQS: moto)
    tried: int = 0
    survived: int = 0
    lost: int = 0
    seconds: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.lost == 0 and not self.failures and self.survived == self.tried

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "backend": self.backend,
            "tried": self.tried,
            "survived": self.survived,
            "lost": self.lost,
            "ok": self.ok,
            "seconds": round(self.seconds, 1),
            "notes": self.notes,
            "failures": self.failures[:50],
        }

    def fail(self, message: str) -> None:
        self.failures.append(message)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Figures:
        figures = cls(
            doc["scenario"],
            backend=doc.get("backend", MOTO),
            tried=doc["tried"],
            survived=doc["survived"],
            lost=doc["lost"],
            seconds=doc["seconds"],
            notes=doc.get("notes", {}),
        )
        figures.failures.extend(doc.get("failures", []))
        return figures


@contextmanager
def timed(figures: Figures) -> Iterator[Figures]:
    started = time.monotonic()
    try:
        yield figures
    finally:
        figures.seconds = time.monotonic() - started


# -- settings and kits --------------------------------------------------------------------------
def fresh_names() -> dict[str, str]:
    tag = uuid.uuid4().hex[:10]
    return {name: f"pik-{name.replace('_', '-')}-{tag}" for name in RESOURCE_FIELDS}


def settings_for(endpoint_url: str, **overrides: Any) -> Settings:
    """Settings with resource names of their own (so runs never share state)."""
    return Settings(endpoint_url=endpoint_url, region="us-east-1", **{**fresh_names(), **overrides})


def env_for(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment a ``pik`` subprocess needs to use ``settings``'s backend and names."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PIK_", "DRY_RUN"))}
    env["AWS_ENDPOINT_URL"] = settings.endpoint_url or ""
    env["AWS_REGION"] = settings.region
    for name in RESOURCE_FIELDS:
        env[f"PIK_{name.upper()}"] = str(getattr(settings, name))
    env.update(extra)
    return env


def kit_with(
    settings: Settings,
    *,
    max_attempts: int = KIT_RETRIES,
    injector: FaultInjector | None = None,
    clock: Clock | None = None,
    kinesis_endpoint: str | None = None,
) -> Kit:
    """``build_kit`` with chosen boto3 retries, optionally faults on every client (installed
    as each is made) and Kinesis on another endpoint than the rest (a faithful emulator).

    ``max_attempts`` is botocore's *retry* count (``Config(retries={"max_attempts": n})``):
    n + 1 attempts in all.
    """
    config = dataclasses.replace(settings.aws(), max_attempts=max_attempts)
    environ = {"AWS_ENDPOINT_URL_KINESIS": kinesis_endpoint} if kinesis_endpoint else {}
    hook = None if injector is None else (lambda _service, client: injector.install(client))
    clients = AwsClients(config, on_client=hook, environ=environ)
    return build_kit(settings, clock, clients=clients)


# -- known events ------------------------------------------------------------------------------
def known_event(run: str, n: int, *, entities: int = 7, day: str = "2025-12-28") -> bytes:
    """The n-th event of a run: distinct identity, a few entities, spread over one day."""
    doc = {
        "source": "reliability",
        "event_type": "tick",
        "entity_id": f"{run}-e{n % entities}",
        "event_time": f"{day}T{(n // 3600) % 24:02d}:{(n // 60) % 60:02d}:{n % 60:02d}Z",
        "payload": {"n": n, "steps": n % 17},
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def identity_of(body: bytes) -> str:
    parsed = parse_body(body)
    if not isinstance(parsed, Event):
        raise ValueError(f"not a valid event: {body[:80]!r}")
    return event_id(parsed)


# -- the audit ---------------------------------------------------------------------------------
def archived_records(kit: Kit, prefix: str) -> list[tuple[str, int, ArchiveRecord]]:
    """Every record under ``prefix`` of the bucket, as (key, position, record)."""
    s3 = kit.clients.s3()
    out: list[tuple[str, int, ArchiveRecord]] = []
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=kit.names.bucket, Prefix=prefix
    ):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            for position, record in enumerate(decode_archive(kit.archive.get_file(key))):
                out.append((key, position, record))
    return out


def index_items(kit: Kit) -> list[dict[str, Any]]:
    """Every item of the events table (a Scan: for audits only, never on the kit's paths), as
    the kit's readers see them (``infra.index_layout.restore``)."""
    ddb = kit.clients.dynamodb()
    de = TypeDeserializer()
    items: list[dict[str, Any]] = []
    for page in ddb.get_paginator("scan").paginate(
        TableName=kit.names.events_table, ConsistentRead=True
    ):
        items.extend(
            restore({k: de.deserialize(v) for k, v in raw.items()}) for raw in page["Items"]
        )
    return items


@dataclass
class Audit:
    """What the backend holds for a set of expected event ids."""

    expected: int
    indexed_once: int = 0
    missing: list[str] = field(default_factory=list)
    dangling: list[str] = field(default_factory=list)  # index item → no such archived record
    duplicates_indexed: list[str] = field(default_factory=list)  # a retry counted as duplicate
    archive_copies: Counter[int] = field(default_factory=Counter)  # copies → number of events
    unexpected: int = 0  # identity items nobody sent
    # (source, type, hour): stored rollup counters that differ from a recount of the archived
    # records the index points at (infra.rollups: exact under retries and crashes)
    rollups_off: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return len(self.missing) + len(self.dangling)

    def to_json(self) -> dict[str, Any]:
        return {
            "expected": self.expected,
            "indexed_once": self.indexed_once,
            "missing": len(self.missing),
            "dangling_pointers": len(self.dangling),
            "retries_indexed_as_duplicates": len(self.duplicates_indexed),
            "archive_copies": {str(k): v for k, v in sorted(self.archive_copies.items())},
            "unexpected_identities": self.unexpected,
            "rollups_off": len(self.rollups_off),
        }


def audit(kit: Kit, expected_ids: Iterable[str]) -> Audit:
    """Each expected event: indexed exactly once, its pointer resolving to its archived record,
    no duplicate occurrence, and how many archived copies of it exist (≥ 1)."""
    wanted = set(expected_ids)
    result = Audit(expected=len(wanted))
    # What any writer does once a stopped writer's lease is over (infra.claims: a sweep a
    # minute, for notes older than two minutes): finish the archive files it left pending.
    kit.index.sweep(older_than=0, limit=None)
    items = index_items(kit)
    identity: dict[str, dict[str, Any]] = {}
    occurrences: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in items:
        if item["item"] == IDENTITY_ITEM:
            identity[item["event_id"]] = item
        else:
            occurrences[item["event_id"]].append(item)
    copies: Counter[str] = Counter()
    records: dict[tuple[str, int], ArchiveRecord] = {}
    for key, position, record in archived_records(kit, f"{RAW_PREFIX}/"):
        records[(key, position)] = record
        copies[record.event_id] += 1
    for eid in sorted(wanted):
        found = identity.get(eid)
        if found is None:
            result.missing.append(eid)
            continue
        item = found
        pointed = records.get((item["archive_key"], int(item["archive_position"])))
        if pointed is None or pointed.event_id != eid:
            result.dangling.append(eid)
            continue
        if any(o.get("status") == "DUPLICATE" for o in occurrences.get(eid, [])):
            result.duplicates_indexed.append(eid)
        result.indexed_once += 1
        result.archive_copies[copies[eid]] += 1
    result.unexpected = len(set(identity) - wanted)
    for key, position, record in archived_records(kit, f"{QUARANTINE_PREFIX}/"):
        records[(key, position)] = record
    result.rollups_off = rollups_off(items, records)
    return result


def rollups_off(
    items: list[dict[str, Any]], records: dict[tuple[str, int], ArchiveRecord]
) -> list[str]:
    """The rollups the sink stored against a recount of every delivery the index holds (its
    identity and occurrence items), read from the archived record each points at."""
    stored = merge_rollups(
        Rollup.from_item({k: int(v) if isinstance(v, Decimal) else v for k, v in i.items()})
        for i in items
        if str(i["event_id"]).startswith(ROLLUP_PREFIX)
    )
    delivered = []
    for item in items:
        kind = str(item["item"])
        if kind != IDENTITY_ITEM and not kind.startswith(OCCURRENCE_PREFIX):
            continue
        r = records.get((str(item["archive_key"]), int(item["archive_position"])))
        if r is None:
            continue  # a dangling pointer: audit counts it
        delivered.append(
            {
                "status": item["status"],  # the index is authoritative (a lost race)
                "source": r.source,
                "event_type": r.event_type,
                "ingest_time": format_time(r.ingest_time),
                "event_time": format_time(r.event_time) if r.event_time else None,
                "lag_ms": r.lag_ms,
                "reason": r.reason,
            }
        )
    want = {(x.source, x.event_type, x.hour): +x.counts for x in recount(delivered)}
    got = {(x.source, x.event_type, x.hour): +x.counts for x in stored}
    return [
        f"{'/'.join(k)}: stored {dict(got.get(k, {}))}, recounted {dict(want.get(k, {}))}"
        for k in sorted(want.keys() | got.keys())
        if want.get(k) != got.get(k)
    ]


def quarantined(kit: Kit) -> list[tuple[str, int, ArchiveRecord]]:
    return archived_records(kit, f"{QUARANTINE_PREFIX}/")


def rss_kib(pid: int) -> int | None:
    """Resident set size of a process in KiB (Linux), None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
