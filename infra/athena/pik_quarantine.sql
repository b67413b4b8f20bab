-- Rejected records (with `reason` and `detail`) of the kit's Avro archive, under
-- s3://BUCKET/quarantine/, as an Athena table.
--
-- Replace {{DATABASE}} and {{BUCKET}} before running (docs/deploy.md, "Athena"), e.g.
--   sed -e 's/{{DATABASE}}/pik/g' -e 's/{{BUCKET}}/my-raw-bucket/g' infra/athena/pik_quarantine.sql
-- The columns and the reader schema below are schemas/archive_record.avsc with timestamp
-- logical types read as plain longs (microseconds since the epoch, UTC): convert with
-- from_unixtime(event_time / 1e6). Partitions are projected, never crawled or repaired:
--   source_key, event_type_key  the key segments source=... and event_type=... as written, i.e.
--                               Hive-escaped (every byte outside [A-Za-z0-9_-] is %XX; a missing
--                               value is _unknown). Injected: a query names them with = or IN.
--   ingest_date                 yyyy-MM-dd, UTC, from 2024-01-01 to today.
--   hour                        0 to 23, UTC.
-- The data columns `source` and `event_type` hold the unescaped values.
CREATE EXTERNAL TABLE IF NOT EXISTS {{DATABASE}}.pik_quarantine (
  `event_id` string COMMENT 'SHA-256 identity (hex)',
  `status` string COMMENT 'ACCEPTED | DUPLICATE | REJECTED',
  `reason` string,
  `detail` string,
  `source` string,
  `event_type` string,
  `entity_id` string,
  `event_time` bigint COMMENT 'microseconds since the epoch, UTC (Avro timestamp-micros)',
  `idempotency_key` string,
  `ingest_time` bigint COMMENT 'microseconds since the epoch, UTC (Avro timestamp-micros)',
  `lag_ms` bigint COMMENT 'ingest_time - event_time, milliseconds',
  `payload` string COMMENT 'canonical JSON text of the payload',
  `raw` binary COMMENT 'the exact bytes received',
  `schema_fingerprint` string,
  `occurrence_id` string,
  `origin` string,
  `request_id` string,
  `stream` string,
  `shard_id` string,
  `sequence_number` string,
  `sub_sequence_number` bigint,
  `partition_key` string,
  `arrival_time` bigint COMMENT 'microseconds since the epoch, UTC (Avro timestamp-micros)',
  `schema_ref` string COMMENT 'the remote registry name of the writer schema'
)
PARTITIONED BY (
  `source_key` string,
  `event_type_key` string,
  `ingest_date` string,
  `hour` int
)
ROW FORMAT SERDE 'org.apache.hadoop.hive.serde2.avro.AvroSerDe'
WITH SERDEPROPERTIES (
  'avro.schema.literal' = '{"type":"record","name":"ArchiveRecord","namespace":"pik.archive","fields":[{"name":"event_id","type":"string"},{"name":"status","type":"string"},{"name":"reason","type":["null","string"],"default":null},{"name":"detail","type":["null","string"],"default":null},{"name":"source","type":["null","string"],"default":null},{"name":"event_type","type":["null","string"],"default":null},{"name":"entity_id","type":["null","string"],"default":null},{"name":"event_time","type":["null","long"],"default":null},{"name":"idempotency_key","type":["null","string"],"default":null},{"name":"ingest_time","type":"long"},{"name":"lag_ms","type":["null","long"],"default":null},{"name":"payload","type":["null","string"],"default":null},{"name":"raw","type":"bytes"},{"name":"schema_fingerprint","type":["null","string"],"default":null},{"name":"occurrence_id","type":"string"},{"name":"origin","type":"string"},{"name":"request_id","type":["null","string"],"default":null},{"name":"stream","type":["null","string"],"default":null},{"name":"shard_id","type":["null","string"],"default":null},{"name":"sequence_number","type":["null","string"],"default":null},{"name":"sub_sequence_number","type":["null","long"],"default":null},{"name":"partition_key","type":["null","string"],"default":null},{"name":"arrival_time","type":["null","long"],"default":null},{"name":"schema_ref","type":["null","string"],"default":null}]}'
)
STORED AS
  INPUTFORMAT 'org.apache.hadoop.hive.ql.io.avro.AvroContainerInputFormat'
  OUTPUTFORMAT 'org.apache.hadoop.hive.ql.io.avro.AvroContainerOutputFormat'
LOCATION 's3://{{BUCKET}}/quarantine/'
TBLPROPERTIES (
  'projection.enabled' = 'true',
  'projection.source_key.type' = 'injected',
  'projection.event_type_key.type' = 'injected',
  'projection.ingest_date.type' = 'date',
  'projection.ingest_date.format' = 'yyyy-MM-dd',
  'projection.ingest_date.range' = '2024-01-01,NOW',
  'projection.ingest_date.interval' = '1',
  'projection.ingest_date.interval.unit' = 'DAYS',
  'projection.hour.type' = 'integer',
  'projection.hour.range' = '0,23',
  'projection.hour.digits' = '2',
  'storage.location.template' = 's3://{{BUCKET}}/quarantine/source=${source_key}/event_type=${event_type_key}/ingest_date=${ingest_date}/hour=${hour}/',
  'classification' = 'avro'
);
