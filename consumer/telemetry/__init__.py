"""Prometheus metrics (``metrics``) and JSON logs (``logging``)."""
