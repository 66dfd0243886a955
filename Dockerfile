# One image for the gateway and the workers; the command picks the role.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY registry registry
COPY gateway gateway
COPY backends backends
COPY modelgate modelgate
COPY migrations migrations
RUN pip install --no-cache-dir .
ENV MODELGATE_ARTIFACT_ROOT=/var/lib/modelgate/artifacts
EXPOSE 8000 8001
ENTRYPOINT ["modelgate"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
