"""minietcd: a small etcd v2 keys API server for demos, tests and small clusters."""
