"""The raw archive port (``RawArchive``) and its S3 and in-memory adapters.

Files are immutable: a put never overwrites (S3 ``If-None-Match: *``). A put that finds the key
already there reports it instead of failing, because deterministic file names make a retried
write land on the same key.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from infra.aws_errors import map_aws_errors
from infra.errors import BackendError, ConditionFailed, NotFound
from schemas.codec import ArchiveRecord, decode_archive

_CONFLICT_CODES = {"ConditionalRequestConflict", "409"}
_MISSING_CODES = {"NoSuchKey", "404", "NotFound"}
_CONFLICT_RETRIES = 5


@dataclass(frozen=True, slots=True)
class ArchivePointer:
    bucket: str
    key: str
    position: int

    def to_json(self) -> dict[str, Any]:
        return {"bucket": self.bucket, "key": self.key, "position": self.position}


class RawArchive(Protocol):
    bucket: str

    def put_file(self, key: str, body: bytes) -> bool:
        """Write ``body`` under ``key`` once. True if written now, False if it was already there."""
        ...

    def get_file(self, key: str) -> bytes: ...


class S3RawArchive:
    def __init__(self, s3_client: Any, bucket: str) -> None:
        self._s3 = s3_client
        self.bucket = bucket

    def _errors(self, operation: str, key: str) -> AbstractContextManager[None]:
        return map_aws_errors("s3", f"s3://{self.bucket}/{key}", operation)

    def put_file(self, key: str, body: bytes) -> bool:
        for _ in range(_CONFLICT_RETRIES):
            try:
                with self._errors("PutObject", key):
                    self._s3.put_object(
                        Bucket=self.bucket,
                        Key=key,
                        Body=body,
                        IfNoneMatch="*",
                        ContentType="avro/binary",
                    )
                return True
            except ConditionFailed as exc:
                if exc.code in _CONFLICT_CODES:  # another write of the key is under way
                    continue
                return False
        raise BackendError(
            f"S3 PutObject on s3://{self.bucket}/{key}: conflicting writers",
            service="s3",
            code="409",
        )

    def keys(self, prefix: str) -> Iterator[str]:
        """Every file key under ``prefix``, in key order (for ``pik reindex``)."""
        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        with self._errors("ListObjectsV2", prefix):
            for page in pages:
                for entry in page.get("Contents", []):
                    yield str(entry["Key"])

    def get_file(self, key: str) -> bytes:
        try:
            with self._errors("GetObject", key):
                body: bytes = self._s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except BackendError as exc:
            if exc.code in _MISSING_CODES:
                raise NotFound(f"archive file s3://{self.bucket}/{key} not found") from exc
            raise
        return body


class MemoryRawArchive:
    """In-memory archive for unit tests; same once-only semantics as S3."""

    def __init__(self, bucket: str = "memory") -> None:
        self.bucket = bucket
        self.files: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def put_file(self, key: str, body: bytes) -> bool:
        with self._lock:
            if key in self.files:
                return False
            self.files[key] = body
            return True

    def keys(self, prefix: str) -> Iterator[str]:
        with self._lock:
            found = sorted(k for k in self.files if k.startswith(prefix))
        yield from found

    def get_file(self, key: str) -> bytes:
        try:
            return self.files[key]
        except KeyError:
            raise NotFound(f"archive file {key} not found") from None


class ArchiveReader:
    """Reads archived records by pointer, one download per file (small LRU of decoded files)."""

    def __init__(self, archive: RawArchive, cached_files: int = 16) -> None:
        self._archive = archive
        self._cache: OrderedDict[str, list[ArchiveRecord]] = OrderedDict()
        self._size = cached_files

    def records(self, key: str) -> list[ArchiveRecord]:
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        records = list(decode_archive(self._archive.get_file(key)))
        self._cache[key] = records
        if len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return records

    def read(self, pointer: ArchivePointer) -> ArchiveRecord:
        records = self.records(pointer.key)
        if not 0 <= pointer.position < len(records):
            raise NotFound(f"no record {pointer.position} in {pointer.key}")
        return records[pointer.position]
