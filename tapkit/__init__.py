"""What the twistd plugins of twistednode and minietcd share, so that neither package
imports the other: starting without TLS, the project's version, listener options
(endpoints), one line for a port in use (listening), and server TLS (servertls).
"""
