"""Benchmarks that write side-by-side figures to a file (installed as `studio_nova_benchmarks`)."""
