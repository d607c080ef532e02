"""Cluster nodes as real processes: on minietcd, real etcd, beside node-discover."""
