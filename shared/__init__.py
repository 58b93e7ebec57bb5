"""The package every DevMetrics service imports: configuration, database, models."""
