"""Tests for twistednode.trust: the keyring, sealed datagrams, live reloading."""
