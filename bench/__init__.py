"""Open-loop benchmark of the suite, with MLServer and bare floors as comparison.

Run it from the repository root with ``python -m bench``; ``python -m bench --help``
lists the options, and docs/benchmarks.md gives the command and the latest results.
"""
