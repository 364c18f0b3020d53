# rnnserve images. Build context: the repository root.
#
#   docker build -t rnnserve-tfserving .                       # TF Serving with the demo model (default target)
#   docker build --target embedded -t rnnserve-embedded .      # the same export behind `rnnserve serve`
#   docker build --build-arg EXPORT_DIR=exports/charlm -t rnnserve-tfserving .   # ship an existing export
#
# Stage `venv` installs rnnserve into /opt/venv; stage `build` trains + exports
# the demo char LM with it, or copies EXPORT_DIR (a directory of integer
# versions inside the context); `embedded` is `venv` plus the export.
# Both serving stages run as uid 10001: the build stage makes the export
# readable by every user (a version directory written with another umask, or
# by an older rnnserve, may be private to its owner) and the config files are
# copied with mode 0644, whatever the checkout's modes.

ARG PYTHON_IMAGE=python:3.11-slim
# TF Serving's release that matches TensorFlow 2.21 (and tensorflow-serving-api 2.21).
ARG TF_SERVING_IMAGE=tensorflow/serving:2.21.0

FROM ${PYTHON_IMAGE} AS venv
# Behind a TLS-intercepting proxy, mount its CA bundle into the build and name it:
# `-v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro
#  --build-arg PIP_CERT=/etc/ssl/certs/ca-certificates.crt` (python:3.11-slim's pip
# trusts its own certifi bundle, not the system one). Never reaches the serving images.
ARG PIP_CERT
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# Only what `pip install .` reads: a new export in the context (EXPORT_DIR)
# leaves this stage, the slow one (TensorFlow), cached. The serving image
# starts from it (no copy of the venv to digest and store again); the
# sources go once installed.
COPY pyproject.toml README.md ./
COPY rnnserve/ rnnserve/
COPY models/ models/
COPY training/ training/
COPY serving/ serving/
COPY benchmarks/ benchmarks/
RUN pip install --no-cache-dir './[full]' && rm -rf /src

FROM venv AS build
ARG MODEL_NAME=charlm
ARG TIME_BUDGET=120
ARG EXPORT_DIR=docker/no-export
WORKDIR /build
COPY ${EXPORT_DIR} /build/provided/
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN if find /build/provided -mindepth 1 -maxdepth 1 -type d -regex '.*/[0-9]+' | grep -q .; then \
        mkdir -p /build/export && cp -r /build/provided "/build/export/${MODEL_NAME}"; \
    else \
        rnnserve train charlm --time-budget "${TIME_BUDGET}" --out /build/run --export-base "/build/export/${MODEL_NAME}"; \
    fi \
    && chmod -R a+rX /build/export

# The embedded server (`rnnserve serve`) on the same export and config files.
FROM venv AS embedded
ARG MODEL_NAME=charlm
ENV MODEL_NAME=${MODEL_NAME} TF_CPP_MIN_LOG_LEVEL=2
RUN groupadd --gid 10001 rnnserve && useradd --create-home --uid 10001 --gid 10001 rnnserve
WORKDIR /home/rnnserve
COPY --from=build /build/export/${MODEL_NAME} /models/${MODEL_NAME}
COPY --chmod=0644 docker/models.config docker/monitoring.config docker/batching.config /config/
USER 10001:10001
EXPOSE 8500 8501
ENTRYPOINT ["rnnserve"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8500", "--rest_api_port", "8501", \
     "--model_config_file", "/config/models.config", "--monitoring_config_file", "/config/monitoring.config"]

# TensorFlow Serving itself, serving the export (the default target).
FROM ${TF_SERVING_IMAGE} AS tfserving
ARG MODEL_NAME=charlm
# The image's entrypoint serves ${MODEL_BASE_PATH}/${MODEL_NAME}; the config file below names the same path.
ENV MODEL_NAME=${MODEL_NAME} MODEL_BASE_PATH=/models
RUN groupadd --gid 10001 tfserving && useradd --create-home --uid 10001 --gid 10001 tfserving
COPY --from=build /build/export/${MODEL_NAME} /models/${MODEL_NAME}
COPY --chmod=0644 docker/models.config docker/monitoring.config docker/batching.config /config/
USER 10001:10001
EXPOSE 8500 8501
CMD ["--model_config_file=/config/models.config", "--model_config_file_poll_wait_seconds=60", \
     "--monitoring_config_file=/config/monitoring.config"]
