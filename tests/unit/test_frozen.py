"""schemas/frozen.py: a maker builds the very instance the class itself would."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

from consumers.ingest import Submission
from schemas.codec import ArchiveRecord, Provenance, new_archive_record, new_provenance
from schemas.envelope import Reason, Rejection
from schemas.frozen import maker

NOW = datetime(2025, 12, 29, 1, 0, tzinfo=UTC)


def same_instance(made: Any, built: Any) -> None:
    assert type(made) is type(built)
    assert made == built
    assert hash(made) == hash(built)
    assert dataclasses.astuple(made) == dataclasses.astuple(built)
    assert repr(made) == repr(built)
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.__setattr__(dataclasses.fields(made)[0].name, "changed")


@pytest.mark.parametrize(
    ("cls", "args", "kwargs"),
    [
        (Provenance, ("occ", "http"), {}),
        (
            Provenance,
            (),
            {
                "occurrence_id": "kinesis:s:shard:1:0",
                "origin": "kinesis",
                "stream": "s",
                "shard_id": "shard",
                "sequence_number": "1",
                "sub_sequence_number": 0,
                "partition_key": "k",
                "arrival_time": NOW,
            },
        ),
        (ArchiveRecord, ("e", "REJECTED", NOW, b"raw", Provenance("o", "http")), {}),
        (
            ArchiveRecord,
            ("e", "ACCEPTED", NOW, b"{}"),
            {"provenance": Provenance("o", "http"), "lag_ms": 5, "payload": "{}", "source": "s"},
        ),
        (Submission, (b"x", Provenance("o", "http"), Rejection(Reason.TOO_LARGE, "big"), "0"), {}),
    ],
)
def test_a_maker_builds_what_the_class_builds(
    cls: type[Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    same_instance(maker(cls)(*args, **kwargs), cls(*args, **kwargs))


def test_every_field_of_every_hot_class_is_set() -> None:
    for cls, make in ((Provenance, new_provenance), (ArchiveRecord, new_archive_record)):
        values: dict[str, Any] = {f.name: f"v{i}" for i, f in enumerate(dataclasses.fields(cls))}
        same_instance(make(**values), cls(**values))


def test_missing_and_unknown_arguments_fail_as_for_the_class() -> None:
    with pytest.raises(TypeError):
        new_provenance(origin="http")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        new_provenance("o", "http", colour="red")  # type: ignore[call-arg]


@dataclasses.dataclass(frozen=True, slots=True)
class WithPostInit:
    a: int

    def __post_init__(self) -> None:
        pass


@dataclasses.dataclass(frozen=True, slots=True)
class WithFactory:
    a: list[int] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class NotSlotted:
    a: int


@dataclasses.dataclass(slots=True)
class NotFrozen:
    a: int


@pytest.mark.parametrize("cls", [WithPostInit, WithFactory, NotSlotted, NotFrozen, dict])
def test_classes_whose_init_does_more_are_refused(cls: type[Any]) -> None:
    with pytest.raises(TypeError):
        maker(cls)


@dataclasses.dataclass(frozen=True, slots=True)
class Point:
    x: int
    y: int
    label: str | None = None


def test_positional_callers_name_the_leading_fields() -> None:
    make = maker(Point, positional=("x", "y"))
    same_instance(make(1, 2), Point(1, 2))


@pytest.mark.parametrize(
    "positional",
    [("y", "x"), ("x", "label"), ("x", "y", "label", "extra"), ("x", "z")],
)
def test_a_moved_or_unknown_positional_field_is_refused(positional: tuple[str, ...]) -> None:
    with pytest.raises(TypeError, match="by position"):
        maker(Point, positional=positional)
