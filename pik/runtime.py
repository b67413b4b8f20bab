"""Process-wide settings for the kit's long-running work: the cyclic garbage collector."""

from __future__ import annotations

import gc

GEN0_THRESHOLD = 50_000  # allocations between runs of the youngest generation (CPython: 700)


def tune_collector() -> None:
    """Freeze what start-up made, and let the youngest generation grow to 50,000 objects.

    The ingest path allocates a dozen short-lived containers per record, which reference
    counting frees. With CPython's default threshold the cyclic collector runs every ~60
    records, and with a batch of records alive it scans the older generations over and over: a
    sixth of the tap's CPU (``bench/tap.py``). Start-up objects (modules, schemas, clients) move
    to the permanent generation, which the collector no longer scans. Cyclic garbage is still
    collected, a little later. Calling it again changes nothing more.
    """
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)
