"""Scheduler: turns every site's sessions and pace into send ticks."""
