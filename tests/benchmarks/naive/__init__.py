"""A naive baseline for the benchmarks: one Celery task per event, one HTTP request per event."""
