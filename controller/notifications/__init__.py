"""Notifications of a rollout's transitions: what to say (`messages`) and its delivery (`delivery`)."""
