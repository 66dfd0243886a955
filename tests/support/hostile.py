"""Hypothesis strategies for hostile inference requests, and a deterministic batch of them.

Each `Hostile` is one HTTP request (method, path, headers, body) aimed at a model ``resnet``
whose version ``1.0.0`` takes ``input`` FP32 ``[batch, 4]``. ``refused`` marks a request
built so that no worker may accept it (JSON nested past the limit, a shape numpy refuses,
a lying binary header, a zip bomb...): a worker must answer it with a 4xx. Others are
probes whose answer may be anything below 500 (a gateway path that happens to name a real
version, a valid body with junk headers).
"""

from __future__ import annotations

import gzip
import json
import struct
import zlib
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

MODEL = "resnet"
VERSION = "1.0.0"
WORKER_PATH = f"/v2/models/{MODEL}/versions/{VERSION}/infer"
#: The worker body limit the fleet of the hostile-input test runs with.
WORKER_BODY_LIMIT = 256 * 1024


@dataclass(frozen=True)
class Hostile:
    """One request; ``kind`` says what is hostile about it (for failure reports)."""

    kind: str
    body: bytes
    headers: tuple[tuple[str, bytes], ...] = ()
    refused: bool = True
    path: str = WORKER_PATH
    method: str = "POST"
    #: Whether the request makes sense sent straight to a worker (bodies and their headers).
    for_worker: bool = True

    def describe(self) -> str:
        headers = {k: v[:80] for k, v in self.headers}
        return f"{self.kind}: {self.method} {self.path[:200]} {headers} body={self.body[:300]!r}"


def envelope(*inputs: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"inputs": list(inputs), **extra}


def tensor(shape: Any = (1, 4), datatype: Any = "FP32", data: Any = None, **extra: Any) -> dict:
    item: dict[str, Any] = {"name": "input", "shape": list(shape), "datatype": datatype}
    if data is not None:
        item["data"] = data
    item.update(extra)
    return item


def encode(doc: Any) -> bytes:
    return json.dumps(doc).encode()


GOOD = encode(envelope(tensor(data=[1.0, 2.0, 3.0, 4.0])))
DATATYPES = ["FP32", "FP16", "FP64", "BF16", "INT8", "INT64", "UINT64", "BOOL", "BYTES"]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**80), 2**80),
    st.floats(allow_nan=False),
    st.text(max_size=8),
)
JUNK_TEXT = st.text(st.characters(codec="utf-8"), max_size=40)
LATIN1 = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"))


@st.composite
def deep_json(draw: st.DrawFn, where: str) -> Hostile:
    """JSON nested past the limit, in ``data``, ``parameters``, an unknown field or the top."""
    depth = draw(st.integers(65, 3000))
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
    deep = opener * depth + "1" + closer * depth
    if where == "top":
        text = deep
    elif where == "data":
        text = json.dumps(envelope(tensor(data=[0]))).replace("[0]", deep)
    elif where == "outputs":
        text = json.dumps(envelope(tensor(data=[1] * 4), outputs=[{"name": "output"}]))
        text = text.replace('"output"}', f'"output", "parameters": {{"p": {deep}}}}}')
    else:
        key = "parameters" if where == "parameters" else "junk"
        text = json.dumps(envelope(tensor(data=[1] * 4), **{key: {"p": 0}})).replace(
            "0}", deep + "}"
        )
    return Hostile(f"deep json in {where} ({depth})", text.encode())


HUGE_DIMS = st.one_of(
    st.integers(2**21, 2**70), st.sampled_from([2**31, 2**32, 2**62, 2**63, 2**64])
)


@st.composite
def bad_shapes(draw: st.DrawFn, how: str) -> Hostile:
    """Shapes numpy refuses or the limits bound: huge, negative, zero-size huge, high rank."""
    if how == "zero-huge":
        shape = draw(
            st.permutations([0, draw(HUGE_DIMS), *draw(st.lists(st.integers(0, 9), max_size=3))])
        )
    elif how == "huge":
        shape = draw(st.lists(HUGE_DIMS | st.integers(1, 4), min_size=1, max_size=6))
        shape = [*shape, draw(HUGE_DIMS)]
    elif how == "negative":
        shape = draw(
            st.lists(st.integers(-(2**70), -1) | st.integers(0, 8), min_size=1, max_size=6)
        )
        shape = [*shape, draw(st.integers(-(2**70), -1))]
    else:
        rank = draw(st.integers(33, 200))
        shape = [0 if how == "rank-zero" else 1] * rank
    datatype = draw(st.sampled_from(DATATYPES))
    layout = draw(st.sampled_from(["empty", "one", "binary", "missing"]))
    params: dict[str, Any] = {}
    data: Any = {"empty": [], "one": [1], "binary": None, "missing": None}[layout]
    headers: tuple[tuple[str, bytes], ...] = ()
    tail = b""
    if layout == "binary":
        tail = draw(st.binary(max_size=64))
        params["parameters"] = {"binary_data_size": len(tail)}
    item = tensor(shape, datatype, data, **params)
    head = encode(envelope(item))
    if layout == "binary":
        headers = (("inference-header-content-length", str(len(head)).encode()),)
    return Hostile(f"shape {how}", head + tail, headers)


@st.composite
def bad_binary(draw: st.DrawFn, how: str) -> Hostile:
    """The binary extension lying: header lengths, sizes that do not add up, BYTES prefixes."""
    head_doc = envelope(tensor(parameters={"binary_data_size": 16}))
    tail = struct.pack("<4f", 1, 2, 3, 4)
    header: bytes | None = None
    if how == "header":
        header = draw(
            st.one_of(
                st.one_of(st.integers(20, 5000), st.sampled_from([4301, 5000, 8000])).map(
                    lambda n: b"9" * n
                ),
                st.sampled_from([b"-1", b"\xb2", b"0x10", b" ", b"", b"1e3", b"+5", b"\xd9\xa3"]),
                LATIN1.map(lambda t: t.encode("latin-1")),
            )
        )
        if (
            header.strip().isdigit()
            and header.strip().lstrip(b"0") == str(len(encode(head_doc))).encode()
        ):
            header = b"-" + header
    elif how == "size":
        size = draw(
            st.one_of(
                st.integers(-(2**70), -1),
                st.integers(17, 2**70),
                st.floats(),
                st.text(max_size=5),
                st.booleans(),
            )
        )
        head_doc = envelope(tensor(parameters={"binary_data_size": size}))
    elif how == "tail":
        tail = draw(st.binary(max_size=40).filter(lambda b: len(b) != 16))
    elif how == "bytes":
        count = draw(st.integers(0, 4))
        lengths = draw(st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=4))
        tail = b"".join(struct.pack("<I", n) + b"x" * min(n, 3) for n in lengths)
        tail += draw(st.binary(max_size=5))
        head_doc = envelope(tensor([count], "BYTES", parameters={"binary_data_size": len(tail)}))
        if all(n <= 3 for n in lengths) and len(lengths) == count:
            tail += b"\x01"  # never exactly right
            head_doc = envelope(
                tensor([count], "BYTES", parameters={"binary_data_size": len(tail)})
            )
    else:
        tail = bytes([draw(st.integers(2, 255))]) + b"\x00" * 3
        head_doc = envelope(tensor([1, 4], "BOOL", parameters={"binary_data_size": 4}))
    head = encode(head_doc)
    if header is None:
        header = str(len(head)).encode()
    return Hostile(f"binary {how}", head + tail, (("inference-header-content-length", header),))


@st.composite
def bad_values(draw: st.DrawFn, how: str) -> Hostile:
    """Types and values that cannot be the tensor: wrong datatypes, elements, encodings."""
    if how == "datatype":
        datatype = draw(st.one_of(JUNK_TEXT.filter(lambda t: t not in DATATYPES), SCALARS))
        body = encode(envelope(tensor(datatype=datatype, data=[1] * 4)))
    elif how == "element":
        bad = draw(
            st.one_of(
                st.text(max_size=5),
                st.dictionaries(st.text(max_size=3), SCALARS, min_size=1),
                st.none(),
            )
        )
        body = encode(envelope(tensor(data=[1, 2, bad, 4])))
    elif how == "range":
        datatype, value = draw(
            st.sampled_from(
                [
                    ("FP32", "1e39"),
                    ("FP16", "70000"),
                    ("INT8", "128"),
                    ("UINT8", "-1"),
                    ("INT64", str(2**63)),
                    ("UINT64", str(2**64)),
                    ("FP64", "1e309"),
                    ("INT32", "1.5"),
                ]
            )
        )
        text = json.dumps(envelope(tensor(datatype=datatype, data=[1, 2, 3, 0])))
        body = text.replace("3, 0]", f"3, {value}]").encode()
    elif how == "count":
        rows = draw(st.integers(0, 6))
        data = draw(st.lists(st.floats(-10, 10), max_size=30).filter(lambda d: len(d) != rows * 4))
        body = encode(envelope(tensor([rows, 4], data=data)))
    elif how == "utf8":
        raw = draw(st.binary(min_size=1, max_size=8).filter(lambda b: not _plain_utf8(b)))
        body = (
            b'{"inputs":[{"name":"' + raw + b'","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}'
        )
    elif how == "json":
        body = draw(
            st.one_of(
                st.binary(max_size=200),
                st.sampled_from(
                    [
                        b"",
                        b"null",
                        b"[]",
                        b"{}",
                        b'{"inputs":[]}',
                        b'{"inputs":{}}',
                        b"\xef\xbb\xbf{}",
                        GOOD[:-1],
                        GOOD + b"}",
                        b'{"inputs":[1]}',
                    ]
                ),
            )
        )
    else:
        params = draw(st.sampled_from([{"binary_data_output": "yes"}, {"binary_data_output": 1}]))
        outputs = [
            {
                "name": draw(st.sampled_from(["output", "nope", ""])),
                "parameters": draw(st.sampled_from([{"classification": 3}, {"binary_data": "no"}])),
            }
        ]
        body = encode(envelope(tensor(data=[1] * 4), parameters=params, outputs=outputs))
    return Hostile(f"value {how}", body)


def _plain_utf8(raw: bytes) -> bool:
    try:
        raw.decode()
    except UnicodeDecodeError:
        return False
    return b'"' not in raw and b"\\" not in raw


#: Small bodies that inflate to 2-16 times the worker's body limit (gzip, deflate).
BOMBS = [
    (gzip.compress(fill * (times * WORKER_BODY_LIMIT), 9), b"gzip")
    for fill, times in ((b" ", 2), (b"0", 16))
] + [(zlib.compress(b"[" * (times * WORKER_BODY_LIMIT), 9), b"deflate") for times in (2, 16)]


@st.composite
def bad_encodings(draw: st.DrawFn, how: str) -> Hostile:
    """``Content-Encoding`` bodies: bombs, truncated or trailing data, unknown codings."""
    coding = b"gzip"
    if how == "bomb":
        body, coding = draw(st.sampled_from(BOMBS))
    elif how == "truncated":
        packed = gzip.compress(GOOD)
        body = packed[: draw(st.integers(0, len(packed) - 1))]
    elif how == "trailing":
        body = gzip.compress(GOOD) + draw(st.binary(min_size=1, max_size=30))
    elif how == "junk":
        body = draw(st.binary(max_size=100))
        coding = draw(st.sampled_from([b"gzip", b"deflate", b"GZIP"]))
    else:
        body = GOOD
        coding = draw(
            LATIN1.filter(lambda t: t.strip().lower() not in ("", "identity", "gzip", "deflate"))
        ).encode("latin-1")
    return Hostile(f"encoding {how}", body, (("content-encoding", coding),))


SEGMENT = st.one_of(
    JUNK_TEXT,
    st.sampled_from(
        [
            "resnet",
            "1.0.0",
            "stable",
            "latest",
            "^1.0",
            "..",
            ".",
            "%",
            "%00",
            "%ff",
            "^" + "9" * 30,
            "x" * 3000,
        ]
    ),
)


@st.composite
def gateway_probes(draw: st.DrawFn, how: str) -> Hostile:
    """Paths, methods and routing headers for the gateway (answers may be anything < 500)."""
    body = draw(st.sampled_from([GOOD, b"", b"{"]))
    headers: list[tuple[str, bytes]] = []
    method = "POST"
    if how == "path":
        parts = draw(st.lists(SEGMENT, min_size=1, max_size=6))
        tail = draw(st.sampled_from(["infer", "ready", "", "config", "stats"]))
        path = (
            "/v2/models/"
            + "/".join(quote(p, safe="") for p in parts)
            + (f"/{tail}" if tail else "")
        )
        method = draw(st.sampled_from(["POST", "GET"]))
    elif how == "method":
        path = draw(
            st.sampled_from(
                [WORKER_PATH, "/v2", "/v2/health/ready", "/v2/infer", "/v2/models/resnet"]
            )
        )
        method = draw(st.sampled_from(["PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "GET"]))
    elif how == "headers":
        path = draw(st.sampled_from([WORKER_PATH, f"/v2/models/{MODEL}/infer"]))
        for name in draw(
            st.lists(
                st.sampled_from(
                    [
                        "x-model-version",
                        "x-route-key",
                        "x-request-timeout-ms",
                        "content-type",
                        "authorization",
                        "x-forwarded-for",
                        "accept-encoding",
                    ]
                ),
                min_size=1,
                max_size=4,
                unique=True,
            )
        ):
            if name == "x-request-timeout-ms":
                # NOTE: a real, short deadline is a legitimate 504, not hostile input.
                value = draw(
                    st.one_of(
                        st.sampled_from(["abc", "-1", "nan", "-inf", "1e999", "9" * 5000, ""]),
                        st.integers(30_000, 10**30).map(str),
                    )
                )
            else:
                value = draw(
                    st.one_of(
                        LATIN1.map(lambda t: t[:2000]),
                        SEGMENT.map(lambda t: quote(t, safe="^~<>=|*. ")),
                    )
                )
            headers.append((name, value.encode("latin-1", "replace")))
    else:
        path = "/v2/infer"
        headers.append(("x-model", draw(st.one_of(SEGMENT, st.just(MODEL))).encode("utf-8")))
        if draw(st.booleans()):
            headers.append(("x-model-version", draw(SEGMENT).encode("utf-8")))
    return Hostile(f"gateway {how}", body, tuple(headers), False, path, method, for_worker=False)


@st.composite
def oversize(draw: st.DrawFn, how: str) -> Hostile:
    """Bodies past the worker's limit (but within the gateway's), declared or compressed."""
    size = WORKER_BODY_LIMIT + draw(st.integers(1, WORKER_BODY_LIMIT // 2))
    head = b'{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}],"p":"'
    raw = head + b"x" * (size - len(head) - 2) + b'"}'
    if how == "plain":
        return Hostile("oversize plain", raw)
    return Hostile("oversize gzip", gzip.compress(raw, 1), (("content-encoding", b"gzip"),))


#: Every kind of hostile body (aimed at workers too), one strategy each.
BODY_KINDS: list[st.SearchStrategy[Hostile]] = [
    *(deep_json(w) for w in ("data", "parameters", "unknown", "outputs", "top")),
    *(bad_shapes(h) for h in ("zero-huge", "huge", "negative", "rank", "rank-zero")),
    *(bad_binary(h) for h in ("header", "size", "tail", "bytes", "bool")),
    *(bad_values(h) for h in ("datatype", "element", "range", "count", "utf8", "json", "params")),
    *(bad_encodings(h) for h in ("bomb", "truncated", "trailing", "junk", "unknown")),
    *(oversize(h) for h in ("plain", "gzip")),
]
#: What only the gateway is sent: paths, methods and routing headers.
GATEWAY_KINDS: list[st.SearchStrategy[Hostile]] = [
    gateway_probes(h) for h in ("path", "method", "headers", "header-only")
]


def requests(per_kind: int, kinds: list[st.SearchStrategy[Hostile]]) -> list[Hostile]:
    """``per_kind`` examples of each strategy in ``kinds``, the same on every run."""
    return [item for kind in kinds for item in batch(per_kind, kind)]


def _sendable(value: bytes) -> bytes:
    return bytes(b for b in value if b >= 0x20 and b != 0x7F).strip(b" ")


def batch(count: int, strategy: st.SearchStrategy[Hostile]) -> list[Hostile]:
    """``count`` examples of ``strategy``, the same on every run (derandomized: the seed is
    fixed by the test's code), with no database and no shrinking: nothing fails in here."""
    drawn: list[Hostile] = []

    @settings(
        max_examples=count,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(item: Hostile) -> None:
        # NOTE: what HTTP can carry: no control characters, no whitespace around a value
        # (a server strips it; httpx refuses to send either).
        headers = tuple((k, _sendable(v)) for k, v in item.headers)
        drawn.append(replace(item, headers=headers))

    collect()
    return drawn
