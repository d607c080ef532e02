"""Shared test harnesses: real etcd and minietcd processes, node-discover peers, child
processes, browsers, certificates, fakes and the membership simulation."""
