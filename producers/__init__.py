"""The cio-fleet producer library: enqueue Segment-spec events for delivery to Customer.io.

```python
from producers import Producer

with Producer("redis://127.0.0.1:6379/0", "acme") as producer:
    producer.track("user-1", "Signed Up", {"plan": "pro"})
```

``producers`` never imports the worker, nor Celery: it needs only redis, orjson and pydantic (see the README,
"Producer-only install").
"""

from pydantic import BaseModel as _BaseModel

# The two public modules: the key schema (``producers.keys``) and the wire format (``producers.wire``).
from producers import keys, wire
from producers._async import AsyncProducer
from producers._events import (
    MAX_EVENT_BYTES,
    Alias,
    Group,
    Identify,
    InvalidEventError,
    Page,
    ProducerError,
    Screen,
    SegmentEvent,
    Track,
    parse_event,
    validate_event,
)
from producers._producer import EnqueueResult, NotReplicated, Producer, QueueFull, UnknownWorkspace
from producers.wire import DEFAULT_PARTITIONS, FORMAT_VERSION, partition_for, person_key

__all__ = [
    "DEFAULT_PARTITIONS",
    "FORMAT_VERSION",
    "MAX_EVENT_BYTES",
    "Alias",
    "AsyncProducer",
    "EnqueueResult",
    "Group",
    "Identify",
    "InvalidEventError",
    "NotReplicated",
    "Page",
    "Producer",
    "ProducerError",
    "QueueFull",
    "Screen",
    "SegmentEvent",
    "Track",
    "UnknownWorkspace",
    "connect",
    "keys",
    "parse_event",
    "partition_for",
    "person_key",
    "validate_event",
    "wire",
]

# Public classes say they come from ``producers``, not a private module (pydantic models keep theirs: their
# annotations are resolved in their own module).
for _name in __all__:
    _member = globals()[_name]
    if isinstance(_member, type) and not issubclass(_member, _BaseModel):
        _member.__module__ = "producers"
