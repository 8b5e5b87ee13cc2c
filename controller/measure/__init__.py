"""Measuring: the one port that reads a Plan from Prometheus and the cache (measure), and its PromQL."""
