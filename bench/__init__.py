"""`make bench`: the per-event cost of the app against a bare round trip and the Azure SDK.

Not part of the test suite: it measures and reports, it asserts nothing. `python -m bench` runs every
phase (per-event cost, concurrency, reuse, cold start) and writes bench/results.json, the plot and
the table of docs/performance.md.
"""
