"""Benchmarks shipped with the package (`mirage bench ...`)."""
