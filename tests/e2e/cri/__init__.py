"""A small CRI v1 client for the tests (the calls kubelet makes) and a node to run pods on:
containerd with its CRI plugin, silo-runtime and silo-cni in front of a silod of its own."""
