"""Analysis, pure: what a look reads (readings), how alpha is spent (budget), the sequential tests and the judge."""
