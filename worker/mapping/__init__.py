"""The mapping core: one Segment event and its options → deliver / skip / reject (pure: no I/O, no clock)."""
