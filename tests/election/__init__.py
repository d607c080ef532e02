"""Tests for twistednode.election: the leased election, its adapter, fencing."""
