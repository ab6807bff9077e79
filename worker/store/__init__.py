"""The Redis code of the hot path: partition streams and leases, the fleet-wide limiter, the layout, fleet state."""
