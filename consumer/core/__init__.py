"""The pure processing core: scheduling, offsets and the offset map, assignment epochs, stall
detection, the wire records, dead letters and the input contract. No awaits, clocks or Kafka."""
