"""Config service: site settings, the public API and console, and system health."""
