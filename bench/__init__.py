"""Benchmarks: commands that print numbers (time, throughput, memory), never timed tests."""
