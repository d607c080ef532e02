"""Tests for twistednode.discovery: wire codec, settings, membership, UDP protocol."""
