"""Provider callbacks: the receiver, the body rules and the relay between workers."""
