"""DevMetrics' entry points, the top layer: the `devmetrics` command (devmetrics/cli/), the
background workers' registry (workers.py), the demo seed, Studio and the retention pass.
They compose the services (services/), which rest on the shared package (shared/); neither
of those imports this one (import-linter's contracts in pyproject.toml)."""
