"""The JSON schemas of the data plane's bodies, by component name: OIP v2 (server and model
metadata, health, inference requests and responses) and Triton's extensions (model config,
statistics, the repository), for `gateway.openapi`."""

from __future__ import annotations

from collections.abc import Sequence

from modelgate.core.openapi import Spec

__all__ = ["STR", "components", "ref"]


def ref(name: str) -> Spec:
    return {"$ref": f"#/components/schemas/{name}"}


def _array(items: Spec) -> Spec:
    return {"type": "array", "items": items}


STR, _INT, _BOOL = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}
_PARAMETERS = {
    "type": "object",
    "description": "Free-form parameters; binary_data_size, binary_data, binary_data_output "
    "drive the binary tensor extension.",
    "additionalProperties": {"type": ["string", "number", "boolean"]},
}
_DATA = {
    "description": "Row-major tensor data, flat or nested; absent when the tensor's bytes "
    "follow the JSON (binary_data_size).",
    "type": "array",
}


def _tensor(*, data: bool) -> Spec:
    props: Spec = {"name": STR, "datatype": STR, "shape": _array(_INT)}
    if data:
        props |= {"parameters": ref("Parameters"), "data": _DATA}
    return {"type": "object", "required": ["name", "datatype", "shape"], "properties": props}


def _object(required: Sequence[str], **props: Spec) -> Spec:
    return {"type": "object", "required": list(required), "properties": props}


_STATS = _object(["count", "ns"], count=_INT, ns=_INT)


def components() -> dict[str, Spec]:
    """The schemas the data plane's bodies use, by component name."""
    return {
        "Parameters": _PARAMETERS,
        "ServerMetadata": _object(
            ["name", "version", "extensions"], name=STR, version=STR, extensions=_array(STR)
        ),
        "ServerLive": _object(["live"], live=_BOOL),
        "ServerReady": _object(
            ["ready"],
            ready=_BOOL,
            degraded={**_array(STR), "description": "stores that are down (database, redis)"},
        ),
        "ModelReady": _object(["name", "ready"], name=STR, ready=_BOOL),
        "MetadataTensor": _tensor(data=False),
        "ModelMetadata": _object(
            ["name", "platform", "inputs", "outputs"],
            name=STR,
            versions=_array(STR),
            platform=STR,
            inputs=_array(ref("MetadataTensor")),
            outputs=_array(ref("MetadataTensor")),
        ),
        "RequestInput": _tensor(data=True),
        "RequestOutput": _object(["name"], name=STR, parameters=ref("Parameters")),
        "InferenceRequest": _object(
            ["inputs"],
            id=STR,
            parameters=ref("Parameters"),
            inputs=_array(ref("RequestInput")),
            outputs=_array(ref("RequestOutput")),
        ),
        "ResponseOutput": _tensor(data=True),
        "InferenceResponse": _object(
            ["model_name", "outputs"],
            model_name=STR,
            model_version={**STR, "description": "the concrete version that served"},
            id=STR,
            parameters=ref("Parameters"),
            outputs=_array(ref("ResponseOutput")),
        ),
        "ModelConfig": {
            **_object(["name", "platform", "max_batch_size", "input", "output"]),
            "description": "Triton's model configuration, from the ONNX signature and the "
            "worker's batching settings.",
            "properties": {
                "name": STR,
                "platform": STR,
                "backend": STR,
                "max_batch_size": _INT,
                "input": _array({"type": "object"}),
                "output": _array({"type": "object"}),
                "dynamic_batching": {"type": "object"},
            },
        },
        "ModelStatistics": _object(
            ["model_stats"],
            model_stats=_array(
                _object(
                    ["name", "version", "inference_count", "execution_count", "inference_stats"],
                    name=STR,
                    version=STR,
                    last_inference=_INT,
                    inference_count=_INT,
                    execution_count=_INT,
                    inference_stats={"type": "object", "additionalProperties": _STATS},
                    batch_stats=_array({"type": "object"}),
                )
            ),
        ),
        "RepositoryIndex": _array(_object(["name"], name=STR, version=STR, state=STR, reason=STR)),
        "RepositoryRequest": _object(
            [],
            parameters={
                **_PARAMETERS,
                "description": "version: the version to place (any reference); workers: "
                "comma-separated worker ids (default: every modelgate worker).",
            },
        ),
    }
