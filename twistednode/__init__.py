"""twistednode: copies of an application find each other and elect one master."""
