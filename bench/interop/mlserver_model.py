"""A tiny scikit-learn model and an MLServer 1.7 model repository for it. Run by the
MLServer virtualenv's Python (``.interop/mlserver/bin/python``), not the project's:

    python bench/interop/mlserver_model.py DIR HTTP_PORT GRPC_PORT

writes ``DIR/settings.json`` (127.0.0.1, those ports, no metrics server,
``parallel_workers: 0``) and ``DIR/iris/`` (``model.joblib``, ``model-settings.json``:
model ``iris``, version ``v1``), then prints ``{"mlserver": ..., "sklearn": ...}``. The
model is a logistic regression trained here on 64 seeded random rows of 4 floats (label:
their sum > 0); nothing is downloaded. ``mlserver start DIR`` serves it.
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import version
from pathlib import Path

import joblib
import numpy as np
from sklearn.linear_model import LogisticRegression

MODEL = "iris"
REMOTE_VERSION = "v1"


def main() -> int:
    root, http_port, grpc_port = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype(np.float32)
    y = (x.sum(axis=1) > 0).astype(np.int64)
    model_dir = root / MODEL
    model_dir.mkdir(parents=True, exist_ok=True)
    joblib.dump(LogisticRegression().fit(x, y), model_dir / "model.joblib")
    (model_dir / "model-settings.json").write_text(
        json.dumps(
            {
                "name": MODEL,
                "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": "./model.joblib", "version": REMOTE_VERSION},
            }
        )
    )
    # NOTE: parallel_workers 0 runs inference in the server process: with uvloop >= 0.22
    # MLServer 1.7's worker pool fails to start.
    settings = {
        "host": "127.0.0.1",
        "http_port": http_port,
        "grpc_port": grpc_port,
        "metrics_endpoint": None,
        "parallel_workers": 0,
    }
    (root / "settings.json").write_text(json.dumps(settings))
    print(json.dumps({"mlserver": version("mlserver"), "sklearn": version("scikit-learn")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
