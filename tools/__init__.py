"""Developer tooling: run the local stack, benchmarks."""
