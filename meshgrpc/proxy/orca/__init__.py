"""Backend load reports (ORCA, gRFC A51) on the proxy's side: reports parsed once
at the edge (report.py), each endpoint's latest report and its age (endpoint_load.py),
the out-of-band subscription (oob.py), PREQUAL's probes (probes.py), and the narrow
stream seam both run on (streams.py), so they do not depend on one gRPC client."""
