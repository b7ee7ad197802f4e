"""Scenarios: the YAML format (model), its loader, tick generators and the simulated clock (runner)."""
