"""Side-by-side benchmarks against real etcd and node-discover (run with python -m)."""
