"""Tests for twistednode.web: the status API and the live page (also in a browser)."""
