"""A JSON binding's mapping, written out as one function for the records that plainly fit it.

``RecordDecoder._mapped`` resolves each envelope field by walking the binding's plan, which is
general (paths through lists, numbers as text, epoch times, every rejection worded) and, per
record, most of the tap's mapping cost. Most records on a busy stream are plain: each mapped
field is a short ASCII string found through objects, the time is RFC 3339 text. For those,
``fast_mapper(binding)`` returns a function generated from the binding (as ``dataclasses``
writes ``__init__``) that looks each field up directly, checks the envelope's rules and builds
the ``Event``; for anything else it returns None and the general mapping decides, so the result
is always the general mapping's (``tests/unit/test_tap_decode_fast.py`` compares them).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from consumers.tap.binding import FieldSpec, Format, TapBinding
from schemas.envelope import TEXT_LIMITS, Event, parse_time, valid_event

FastMapper = Callable[[dict[str, Any], str, datetime], Event | None]


def fast_mapper(binding: TapBinding) -> FastMapper | None:
    """``(record object, partition key, arrival time) → Event``, or None where the general
    mapping must decide; None (no fast mapper) for a binding that is not a mapped JSON one."""
    if binding.format is not Format.JSON or binding.envelope_mode:
        return None
    namespace: dict[str, Any] = {
        "UTC": UTC,
        "datetime": datetime,
        "parse_time": parse_time,
        "valid_event": valid_event,
    }
    lines: list[str] = []
    required: list[str] = []  # text fields that must be there
    for name in ("source", "event_type", "entity_id", "idempotency_key"):
        spec: FieldSpec | None = getattr(binding, name)
        if spec is None and name in ("source", "event_type"):
            spec = FieldSpec(path=(name,))  # as the general plan: JSON records may carry them
        if spec is None:
            lines.append(f"    {name} = {'partition_key' if name == 'entity_id' else 'None'}")
        else:
            lines.extend(_resolve(name, spec, namespace))
        if spec is not None or name == "entity_id":
            required.append(name)
    if binding.event_time is None:
        lines.append("    when = arrival_time")
    else:
        lines.extend(_resolve("when", binding.event_time, namespace))
    checked = []  # what a record supplies; a constant is checked here, once
    for name in required:
        spec = getattr(binding, name)
        if spec is not None and spec.constant is not None:
            if not 0 < len(spec.constant) <= TEXT_LIMITS[name] or not spec.constant.isascii():
                return None  # the general mapping words it (or the model refuses it)
            continue
        checked.append(name)
        lines.append(
            f"    if type({name}) is not str or not 0 < len({name}) <= {TEXT_LIMITS[name]}:"
            "\n        return None"
        )
    if checked:
        lines.append(f"    if not ({' + '.join(checked)}).isascii():\n        return None")
    lines.append(
        "    if type(when) is str:\n"
        "        try:\n"
        "            when = parse_time(when)\n"
        "        except (ValueError, OverflowError):\n"
        "            return None\n"
        "    elif type(when) is not datetime or when.tzinfo is not UTC:\n"
        "        return None"
    )
    fields = sorted({*required, "event_time", "payload"})
    key = "idempotency_key" if "idempotency_key" in required else "None"
    lines.append(
        f"    return valid_event(source, event_type, entity_id, when, value, {key}, {set(fields)!r})"
    )
    source = "def fast(value, partition_key, arrival_time):\n" + "\n".join(lines)
    exec(source, namespace)  # generated from the binding's own field specs
    mapper: FastMapper = namespace["fast"]
    return mapper


def _resolve(name: str, spec: FieldSpec, namespace: dict[str, Any]) -> list[str]:
    """Lines setting ``name`` to the spec's value, or to None when a path finds no object on
    the way (None never passes the checks that follow, so the general mapping decides)."""
    if spec.constant is not None:
        namespace[f"{name}_constant"] = spec.constant
        return [f"    {name} = {name}_constant"]
    parts = spec.path or ()
    if not parts:
        return [f"    {name} = value"]
    out = []
    for i, part in enumerate(parts):
        namespace[f"{name}_{i}"] = part
        if i == 0:
            out.append(f"    {name} = value.get({name}_0)")
        else:
            out.append(f"    {name} = {name}.get({name}_{i}) if type({name}) is dict else None")
    return out
