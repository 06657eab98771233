"""What runs beside the pipeline: health and readiness, the async-task callback receiver and relay,
telemetry, the worker supervisor and dead-letter replay."""
