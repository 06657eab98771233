"""Outgoing HTTP: the bounded client every call uses and the egress policy of media downloads."""
