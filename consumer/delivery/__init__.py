"""What happens to a finished record: its outputs, produced and acknowledged (``outputs``)."""
