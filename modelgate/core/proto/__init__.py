"""The gRPC inference protocol (Triton's and KServe's ``inference.GRPCInferenceService``):
the generated messages (`inference_pb2`, from ``inference.proto``) and the service's wire
names (`service`). Shared by the gateway and the worker, as the announcement is."""
