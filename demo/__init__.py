"""The three-node demo: run it with ``python demo/cluster_demo.py``."""
