"""Workloads: one folder per federated or private-inference workload."""
