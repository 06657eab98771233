"""Logging now; metrics, tracing and health join here."""
