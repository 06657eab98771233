"""What happens to a finished record and to the partitions it came from: the delivery strategies
(``strategies``), the outputs a record produces (``outputs``), and partitions coming and going
(``partitions``)."""
