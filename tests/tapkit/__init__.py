"""Tests for tapkit, what the two twistd plugins share."""
