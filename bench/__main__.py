"""`python -m bench`: every benchmark, one table."""

from bench.run_all import main

main()
