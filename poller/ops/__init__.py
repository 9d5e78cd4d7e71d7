"""Operating the service: metrics, health and readiness, logging."""
