from twisted.application.service import ServiceMaker

minietcd = ServiceMaker(
    "minietcd",
    "minietcd.tap",
    "A small etcd v2 keys API server (keys, dirs, TTLs, watches).",
    "minietcd",
)
