"""The Kinesis tap: attach to an existing stream, de-aggregate, decode by binding, feed the sink.

Modules, top to bottom: ``binding`` (the config contract), ``kpl`` (KPL aggregates),
``decode`` (records → submissions), ``checkpoints`` (leases and checkpoints, the port and its
adapters), ``kinesis`` (the stream port and its boto3 adapter), ``shard`` (one shard's read
loop), ``worker`` (shards, leases and resharding for one stream), ``summary`` (what a run did).
"""
