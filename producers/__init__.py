"""The cio-fleet producer library: enqueue Segment-spec events for delivery to Customer.io."""

from producers._wire import DEFAULT_PARTITIONS, FORMAT_VERSION, partition_for, person_key

__all__ = ["DEFAULT_PARTITIONS", "FORMAT_VERSION", "partition_for", "person_key"]
