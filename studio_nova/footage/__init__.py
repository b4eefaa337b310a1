"""Footage with a known truth, generated: the demo's and the tests' clips."""
