"""The four DevMetrics services (accounts, activity, metrics, notifications)."""
