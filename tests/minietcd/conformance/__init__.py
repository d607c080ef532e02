"""The etcd v2 conformance suite: the same HTTP cases against real etcd and minietcd.

C{http} is a raw HTTP/1.1 client that sends paths exactly as written, C{normalise} turns
a response into what must be equal on both servers, C{runner} runs one case against two
servers and compares, and the C{cases_*} modules hold the cases themselves.
"""
