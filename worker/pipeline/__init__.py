"""The delivery pipeline: one drain of one partition, its sending, retry runs, slots, sweeper, and its ports."""
