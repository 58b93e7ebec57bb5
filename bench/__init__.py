"""DevMetrics benchmarks: `make bench` (full sizes) and `make bench-quick` (a smoke run)."""
