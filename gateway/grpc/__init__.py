"""The gateway's gRPC transport, beside HTTP's (`gateway.oip`): the server and its calls
(`server`, `service`, `models`), the data plane's gRPC `transport` with its pooled worker
`channels`, and the few protobuf `wire` fields it reads and writes."""
