"""The process runtime: worker supervisor, workers, health server and watch."""
