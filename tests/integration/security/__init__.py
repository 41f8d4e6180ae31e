"""Tenant boundaries and trust: one test per rule of docs/security.md."""
