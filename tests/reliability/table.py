"""The one table both forms of the suite print (``bench/reliability.py`` and the pytest run's
summary): a row per scenario with its backend, what was tried, survived and lost."""

from __future__ import annotations

from collections.abc import Sequence

from tests.reliability.support import KINESIS_LOCAL, Figures

BACKEND_NOTE = (
    f"backend: moto = everything on the embedded moto server; {KINESIS_LOCAL} = the stream on "
    "npm kinesis-local 0.6.2 (faithful resharding), S3/DynamoDB/SQS on moto"
)


def highlights(f: Figures) -> str:
    """The few notes a reader of the table needs; the JSON has them all."""
    n = f.notes
    if "faults" in n:
        faults = n["faults"]
        kinds = ", ".join(f"{k} {v}" for k, v in faults["by_kind"].items())
        out = f"injected {faults['injected']}/{faults['attempts']} ({faults['share']:.1%}): {kinds}"
        kinesis = faults["by_service"].get("kinesis")
        if kinesis:
            out += f"; Kinesis {kinesis['injected']}/{kinesis['attempts']}"
        return out
    if "kills" in n:
        out = f"kills {n['kills']}"
        if "client_errors" in n:
            out += f", client errors {sum(n['client_errors'].values())}"
        if "producer_retries" in n:
            out += (
                f", producer retries {n['producer_retries']}, duplicates indexed "
                f"{n['duplicates_indexed']}"
            )
        if "indexed_before_the_final_run" in n:
            out += f", {n['indexed_before_the_final_run']} indexed by killed taps"
        if n.get("reshards"):
            out += f", shards {len(n['shards'])}"
        return out
    if "latency_ms" in n:
        lat, rss = n["latency_ms"], n["server_rss"]
        return (
            f"{n['requests_per_s']} req/s, {n['events_per_s']} ev/s, p50 {lat['p50']} ms, "
            f"p99 {lat['p99']} ms, errors {n['error_rate']:.2%}, RSS {rss['start_mib']}→"
            f"{rss['max_mib']} MiB"
        )
    if "rejections_by_reason" in n:
        answers = f", answers {n['answers_by_code']}" if "answers_by_code" in n else ""
        return f"{len(n['rejections_by_reason'])} rejection reasons{answers}"
    if "requests_by_operation" in n:
        return f"{len(n['requests_by_operation'])} operations"
    if "routes" in n:
        return f"{len(n['routes'])} routes"
    return ""


def table(rows: Sequence[Figures]) -> str:
    head = ("scenario", "backend", "tried", "survived", "lost", "s", "ok", "notes")
    body = [
        (
            f.scenario,
            f.backend,
            f"{f.tried:,}",
            f"{f.survived:,}",
            f"{f.lost:,}",
            f"{f.seconds:.0f}",
            "yes" if f.ok else "NO",
            highlights(f),
        )
        for f in rows
    ]
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head) - 1)]
    lines = []
    for row in [head, (*("-" * w for w in widths), "-----"), *body]:
        cells = [
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=False))
        ]
        lines.append("  ".join([*cells, row[-1]]))
    totals = (sum(f.tried for f in rows), sum(f.survived for f in rows), sum(f.lost for f in rows))
    lines.append(f"\ntotal: tried {totals[0]:,}, survived {totals[1]:,}, lost {totals[2]:,}")
    lines.append(BACKEND_NOTE)
    failures = [(f.scenario, msg) for f in rows for msg in f.failures[:5]]
    if failures:
        lines.append("failures:")
        lines.extend(f"  {s}: {m[:300]}" for s, m in failures)
    return "\n".join(lines)
