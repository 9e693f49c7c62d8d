"""Operator commands: stats, health, limits (the worker-side tools behind `genpool ...`)."""
