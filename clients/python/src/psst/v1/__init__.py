"""Generated gRPC stubs for psst.v1 (proto/psst/v1/psst.proto). Regenerate with generate.sh."""
