"""The command line: the service and its tools (replay, schemas, policy), thin commands over
library functions."""
