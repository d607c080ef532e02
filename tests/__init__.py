"""Tests for twistednode and minietcd (run with trial)."""
