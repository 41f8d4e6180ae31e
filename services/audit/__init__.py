"""Audit: a tamper-evident projection of every event, with queries and exports."""
