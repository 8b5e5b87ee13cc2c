"""Analysis: metric providers (Prometheus), built-in query templates, guardrail and step judgements."""
