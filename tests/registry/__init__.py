"""Tests for twistednode.registry: backends, record, view, the registry service."""
