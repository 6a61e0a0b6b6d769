"""silo-cni: the CNI plugin of silo, a thin client of silod's network service, as win-bridge
and sdnbridge are thin clients of HNS (reference §4.1-4.2).

ADD finds (or, on the first ADD, creates) the silod network named by the configuration,
creates an endpoint named ``<containerID>_<network>`` with the configuration's policies, port
mappings and DNS, and attaches it to the namespace document of ``CNI_NETNS`` (made for that
path when there is none); DEL removes them; CHECK compares silod's record and the namespace
with the previous result; GC removes the endpoints of containers that are not in the valid
attachments; STATUS says whether silod answers; VERSION lists the spec versions spoken.

One module per command; :mod:`silo.cni.main` is the entry point, taking the environment and
stdio as arguments so that tests run it in-process. Imports only :mod:`silo.client`,
:mod:`silo.schema` and :mod:`silo.errors` (the layer contract): the kernel is silod's.
"""
