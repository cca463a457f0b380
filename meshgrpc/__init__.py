"""meshgrpc: a gRPC-native service mesh (control plane and sidecar proxy)."""

__version__ = "0.1.0"
