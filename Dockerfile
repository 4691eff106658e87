# CPU image. Build: docker build -t rerank-server .
# Run:   docker run -p 8080:8080 -v hf-cache:/cache rerank-server --model bge-reranker-v2-m3
# The model cache is a volume, so a model is downloaded (or converted) once and survives the container;
# the checkpoint converter's environment, set up on the first conversion, lives there too.
FROM python:3.11-slim

# patch: `make install` and the converter apply patches/llama.cpp.patch to llama.cpp's sources;
# wget: KubeRay's probes call it (deploy/kubernetes/rayservice.yaml). Debian's packages are not pinned
# to exact versions (hadolint's DL3008): the archive drops old ones, and the base image's release fixes
# their major versions; Python packages are pinned (constraints.txt).
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends build-essential cmake patch wget \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md models.yaml Makefile constraints.txt constraints-converter.txt ./
COPY patches ./patches
COPY server ./server
# The same build as on a workstation: llama-cpp-python from its sources with the project's patch.
RUN make install VENV=/venv && rm -rf .cache
# --build-arg EXTRAS=ray adds Ray Serve, for a RayService's image.
ARG EXTRAS=""
RUN if [ -n "$EXTRAS" ]; then /venv/bin/pip install --no-cache-dir --constraint constraints.txt -e ".[$EXTRAS]"; fi
ENV PATH=/venv/bin:$PATH

ENV HF_HOME=/cache RERANK_HOST=0.0.0.0 RERANK_PORT=8080 RERANK_CATALOG=/app/models.yaml \
    RERANK_CONVERTER_ENV=/cache/converter
VOLUME /cache
EXPOSE 8080
# On the default port; where a platform passes --port (GPUStack, Kubernetes), it probes /health itself.
HEALTHCHECK CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health')"]
ENTRYPOINT ["python", "-m", "server"]
