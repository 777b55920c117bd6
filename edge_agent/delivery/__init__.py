"""Delivery without loss: durable SQLite buffer, MQTT (UNS) and InfluxDB sinks, and ingest.

See ``edge_agent/delivery/README.md`` for topics, payload and InfluxDB schema.
"""

from edge_agent.delivery.buffer import DurableBuffer
from edge_agent.delivery.influx import InfluxSink, make_writer
from edge_agent.delivery.ingest import IngestStats, run_ingest
from edge_agent.delivery.lineprotocol import batch_lines, record_lines
from edge_agent.delivery.mqtt import MqttSink
from edge_agent.delivery.payload import PayloadError, UnsPayload, decode_payload, encode_payload
from edge_agent.delivery.quarantine import QuarantinedBatch
from edge_agent.delivery.record import Placement, Record, placement_of, sample_count
from edge_agent.delivery.service import Delivery
from edge_agent.delivery.sink import Sink
from edge_agent.delivery.stats import BufferStats, DeliveryStats, SinkStats
from edge_agent.delivery.store import StoreSink

__all__ = [
    "BufferStats",
    "Delivery",
    "DeliveryStats",
    "DurableBuffer",
    "InfluxSink",
    "IngestStats",
    "MqttSink",
    "PayloadError",
    "Placement",
    "QuarantinedBatch",
    "Record",
    "Sink",
    "SinkStats",
    "StoreSink",
    "UnsPayload",
    "batch_lines",
    "decode_payload",
    "encode_payload",
    "make_writer",
    "placement_of",
    "record_lines",
    "run_ingest",
    "sample_count",
]
