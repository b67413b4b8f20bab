"""The Kinesis tap: attach to an existing stream, de-aggregate, decode by binding, feed the sink.

Modules, top to bottom: ``binding`` (the config contract), ``decode`` (records → submissions),
``shard`` (one shard's polling read loop: GetRecords, ingest, checkpoint), ``fanout`` (enhanced fan-out: the stream consumer and a SubscribeToShard reader),
``worker`` (shards, leases and resharding for one stream), ``summary`` (what a run did). The
stream port and its adapters are in ``infra/kinesis.py`` and ``infra/kinesis_boto.py``, the
leases in ``infra/leases.py``; KPL framing, shared with the producers, in ``schemas/kpl.py``.
"""
