"""Tests for minietcd, including its conformance with real etcd 3.4."""
