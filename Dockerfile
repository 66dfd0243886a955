# One CPU image for the gateway, the workers and the one-shot steps (migrate, seed); the
# command picks the role. The GPU worker's image is Dockerfile.gpu.
#
# NOTE: pyproject's markers pick onnxruntime-gpu on Linux x86_64 (so that a developer's
# machine with a GPU uses it). This image has no CUDA libraries, so that wheel would only
# ever run its CPU provider while weighing ten times more: it is swapped for the CPU
# onnxruntime of the same minor version, and the build fails if anything else is left.
FROM python:3.11-slim
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY registry registry
COPY gateway gateway
COPY backends backends
COPY modelgate modelgate
COPY migrations migrations
RUN pip install . \
    && ort="$(pip show onnxruntime-gpu 2>/dev/null | sed -n 's/^Version: //p')" \
    && if [ -n "$ort" ]; then \
         pip uninstall -y onnxruntime-gpu && pip install "onnxruntime~=${ort%.*}.0"; \
       fi \
    && python -c "import importlib.metadata as m; names = {d.metadata['Name'].lower() for d in m.distributions()}; assert 'onnxruntime' in names and 'onnxruntime-gpu' not in names, 'the CPU onnxruntime must be the only one'"
# An unprivileged user owning the artifact store (a named volume mounted there starts with
# this ownership); uid 10001 is what deploy/k8s runs as too.
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/modelgate modelgate \
    && mkdir -p /var/lib/modelgate/artifacts && chown -R 10001:10001 /var/lib/modelgate
USER 10001:10001
ENV MODELGATE_ARTIFACT_ROOT=/var/lib/modelgate/artifacts
EXPOSE 8000 8001
ENTRYPOINT ["modelgate"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
