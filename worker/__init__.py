"""cio-fleet workers: Segment events from Redis Streams to Customer.io's Track API.

Run the fleet with ``celery -A worker worker`` (the Celery app lives in ``worker.celery``).
"""
