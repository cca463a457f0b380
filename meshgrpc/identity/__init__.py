"""Workload identity: SPIFFE IDs, the control plane's certificate authority, join
tokens, the files that hold secrets, and a workload's own certificate (requested
with a local key, renewed at half-life, served as ssl contexts)."""
