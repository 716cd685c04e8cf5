"""Benchmarks run by ``scripts/bench NAME --json`` (one module per NAME, each with ``main``)."""
