"""Operations: Prometheus metrics, JSON logs, Sentry, Celery's console output, health endpoints."""
