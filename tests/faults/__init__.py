"""Fault injection: the real pipeline fed bad deliveries, interrupted, re-run and locked."""
