"""Metrics: counters and lag histograms with bounded dimensions.

Names are the contract of ARCHITECTURE.md (``IngestCount``, ``DuplicateCount``, ...). Locally they
are read as Prometheus text (``GET /metrics``); on Lambda the same values are printed in
CloudWatch embedded metric format. Dimension values come from configured sources and event types;
when none are configured, the first ``max_series`` distinct values are kept and the rest are
reported as ``_other``, so the number of series stays bounded whatever producers send.

Gauges (``set_gauge``) hold a current value, such as the tap's ``TapMillisBehindLatest`` per
stream and shard. Their label values are taken as given: callers pass only values bounded by
the kit's own configuration (streams it taps, shards it holds), never producers' data, and
remove a series (``clear_gauge``) when it stops being true.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

NAMESPACE = "PipelineInvestigationKit"
OTHER = "_other"
LAG_BUCKETS_MS = (100, 1_000, 10_000, 60_000, 300_000, 3_600_000, 86_400_000)
DEFAULT_MAX_SERIES = 50

Labels = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    """Exact text: integral values print as integers, never in 6-digit exponent form."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class Metrics:
    def __init__(
        self, known_values: Iterable[str] = (), max_series: int = DEFAULT_MAX_SERIES
    ) -> None:
        self._known = set(known_values)
        self._fixed = bool(self._known)
        self._max = max_series
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, Labels], float] = defaultdict(float)
        self._histograms: dict[tuple[str, Labels], list[int]] = {}
        self._sums: dict[tuple[str, Labels], float] = defaultdict(float)
        self._gauges: dict[tuple[str, Labels], float] = {}

    def _bound(self, value: str | None, *, admit: bool = True) -> str:
        if not value:
            return "_unknown"
        if value in self._known:
            return value
        if admit and not self._fixed and len(self._known) < self._max:
            self._known.add(value)
            return value
        return OTHER

    def _labels(self, dims: dict[str, str | None], *, admit: bool = True) -> Labels:
        return tuple(sorted((k, self._bound(v, admit=admit)) for k, v in dims.items()))

    def incr(self, name: str, value: float = 1, /, **dims: str | None) -> None:
        with self._lock:
            self._counters[(name, self._labels(dims))] += value

    def observe(self, name: str, value: float, /, **dims: str | None) -> None:
        with self._lock:
            key = (name, self._labels(dims))
            buckets = self._histograms.setdefault(key, [0] * (len(LAG_BUCKETS_MS) + 1))
            for i, bound in enumerate(LAG_BUCKETS_MS):
                if value <= bound:
                    buckets[i] += 1
                    break
            else:
                buckets[-1] += 1
            self._sums[key] += value

    @staticmethod
    def _exact(dims: dict[str, str | None]) -> Labels:
        return tuple(sorted((k, v or "_unknown") for k, v in dims.items()))

    def set_gauge(self, name: str, value: float, /, **dims: str | None) -> None:
        with self._lock:
            self._gauges[(name, self._exact(dims))] = value

    def clear_gauge(self, name: str, /, **dims: str | None) -> None:
        with self._lock:
            self._gauges.pop((name, self._exact(dims)), None)

    def gauge(self, name: str, /, **dims: str | None) -> float | None:
        """The current value of one gauge series, None when it is not set."""
        with self._lock:
            return self._gauges.get((name, self._exact(dims)))

    def counter(self, name: str, **dims: str | None) -> float:
        """Current value of one series (or the sum over all series when no dims are given)."""
        with self._lock:
            if dims:
                return self._counters.get((name, self._labels(dims, admit=False)), 0.0)
            return sum(v for (n, _), v in self._counters.items() if n == name)

    def prometheus(self) -> str:
        def fmt(labels: Labels, extra: str = "") -> str:
            parts = [f'{k}="{_escape(v)}"' for k, v in labels] + ([extra] if extra else [])
            return "{" + ",".join(parts) + "}" if parts else ""

        lines: list[str] = []
        with self._lock:
            for name in sorted({n for n, _ in self._counters}):
                lines.append(f"# TYPE {name} counter")
                for (n, labels), value in sorted(self._counters.items()):
                    if n == name:
                        lines.append(f"{name}{fmt(labels)} {_number(value)}")
            for name in sorted({n for n, _ in self._gauges}):
                lines.append(f"# TYPE {name} gauge")
                for (n, labels), value in sorted(self._gauges.items()):
                    if n == name:
                        lines.append(f"{name}{fmt(labels)} {_number(value)}")
            for name in sorted({n for n, _ in self._histograms}):
                lines.append(f"# TYPE {name} histogram")
                for (n, labels), buckets in sorted(self._histograms.items()):
                    if n != name:
                        continue
                    total = 0
                    for bound, count in zip((*LAG_BUCKETS_MS, "+Inf"), buckets, strict=True):
                        total += count
                        le = f'le="{bound}"'
                        lines.append(f"{name}_bucket{fmt(labels, le)} {total}")
                    lines.append(f"{name}_sum{fmt(labels)} {_number(self._sums[(n, labels)])}")
                    lines.append(f"{name}_count{fmt(labels)} {total}")
        return "\n".join(lines) + "\n"

    def drain_emf(self) -> list[dict[str, Any]]:
        """Everything counted since the last drain, as CloudWatch embedded-metric-format
        documents (one per label set), and start counting afresh. Lag histograms become
        ``Values``/``Counts`` arrays (bucket upper bounds; the overflow bucket as the last bound
        doubled), which CloudWatch turns into percentiles. Gauges are reported with their
        current value (in milliseconds: the one gauge is a lag) and kept."""
        with self._lock:
            counters, self._counters = self._counters, defaultdict(float)
            histograms, self._histograms = self._histograms, {}
            self._sums = defaultdict(float)
            gauges = dict(self._gauges)
        docs: dict[Labels, dict[str, Any]] = {}
        units: dict[Labels, list[tuple[str, str]]] = {}
        for (name, labels), value in counters.items():
            docs.setdefault(labels, dict(labels))[name] = value
            units.setdefault(labels, []).append((name, "Count"))
        bounds = [*LAG_BUCKETS_MS, LAG_BUCKETS_MS[-1] * 2]
        for (name, labels), buckets in histograms.items():
            pairs = [(b, c) for b, c in zip(bounds, buckets, strict=True) if c]
            docs.setdefault(labels, dict(labels))[name] = {
                "Values": [b for b, _ in pairs],
                "Counts": [c for _, c in pairs],
            }
            units.setdefault(labels, []).append((name, "Milliseconds"))
        for (name, labels), value in gauges.items():
            docs.setdefault(labels, dict(labels))[name] = value
            units.setdefault(labels, []).append((name, "Milliseconds"))
        now = int(time.time() * 1000)
        for labels, doc in docs.items():
            doc["_aws"] = {
                "Timestamp": now,
                "CloudWatchMetrics": [
                    {
                        "Namespace": NAMESPACE,
                        "Dimensions": [[k for k, _ in labels]],
                        "Metrics": [{"Name": n, "Unit": u} for n, u in units[labels]],
                    }
                ],
            }
        return list(docs.values())
