"""What other services may use of the metrics service's code (in-process): the figures of a
period, as the read API computes them. Anything else of the metrics service is its own;
import-linter (pyproject.toml) refuses an import of it from another service."""

from services.metrics.periods import Period, dora, team_rollup

__all__ = ["Period", "dora", "team_rollup"]
