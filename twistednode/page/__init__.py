"""The live status page: static files that L{twistednode.status.StatusAPI} serves."""
