"""Tests for twistednode.etcd: the HTTP base, the v2 and v3 clients, the TLS files."""
