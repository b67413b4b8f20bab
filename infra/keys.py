"""Archive key layout: Hive-style partitions with every segment escaped.

``raw/source=S/event_type=T/ingest_date=YYYY-MM-DD/hour=HH/<batch>-<first>-<last>.avro``;
rejected records live under ``quarantine/`` with the same layout. Escaping is Hive's own:
every byte outside ``[A-Za-z0-9_-]`` becomes ``%XX``, so ``../x`` or ``a/b`` stay one segment.
"""

from __future__ import annotations

import re
from datetime import datetime

RAW_PREFIX = "raw"
QUARANTINE_PREFIX = "quarantine"
UNKNOWN_SEGMENT = "_unknown"
MAX_SEGMENT_CHARS = 384  # keeps a whole key under S3's 1,024 bytes

_UNSAFE = re.compile(rb"[^A-Za-z0-9_\-]")


def escape_segment(value: str | None) -> str:
    if not value:
        return UNKNOWN_SEGMENT
    encoded = _UNSAFE.sub(lambda m: b"%%%02X" % m.group()[0], value.encode("utf-8"))
    return encoded.decode("ascii")[:MAX_SEGMENT_CHARS]


def archive_key(
    *,
    quarantine: bool,
    source: str | None,
    event_type: str | None,
    ingest_time: datetime,
    batch: str,
    first: str,
    last: str,
) -> str:
    prefix = QUARANTINE_PREFIX if quarantine else RAW_PREFIX
    name = "-".join(escape_segment(part) for part in (batch, first, last))
    return (
        f"{prefix}/source={escape_segment(source)}/event_type={escape_segment(event_type)}"
        f"/ingest_date={ingest_time:%Y-%m-%d}/hour={ingest_time:%H}/{name}.avro"
    )
