from twisted.application.service import ServiceMaker

clusternode = ServiceMaker(
    "clusternode",
    "twistednode.tap",
    "A cluster node: etcd registry discovery, node-discover UDP hellos, one master.",
    "clusternode",
)
