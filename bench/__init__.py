"""Stagger's benchmarks: every figure beside a raw baseline measured in the same run."""
