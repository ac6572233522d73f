"""Monitoring and self-healing: frozen jobs, broken executors, metrics, repair."""
