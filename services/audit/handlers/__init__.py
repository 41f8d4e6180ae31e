"""The audit service's use cases: the questions auditors and the console ask of the trail."""
