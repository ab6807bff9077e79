"""Helpers shared by test modules: the fake Customer.io in a thread or in a subprocess."""
