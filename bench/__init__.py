"""Benchmarks: each runs a Nespay endpoint and its raw baseline in one run and reports the
ratio (see bench/README.md; results are recorded in docs/benchmarks.md)."""
