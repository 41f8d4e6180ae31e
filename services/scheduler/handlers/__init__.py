"""The scheduler's use cases: keep every schedule's next tick and issue it on time."""
