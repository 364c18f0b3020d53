# rnnserve images. Build context: the repository root.
#
#   docker build -t rnnserve-tfserving .                       # TF Serving with the demo model (default target)
#   docker build --target embedded -t rnnserve-embedded .      # the same export behind `rnnserve serve`
#   docker build --build-arg EXPORT_DIR=exports/charlm -t rnnserve-tfserving .   # ship an existing export
#
# Stage `build` installs rnnserve and trains + exports the demo char LM, or
# copies EXPORT_DIR (a directory of integer versions inside the context).

ARG PYTHON_IMAGE=python:3.11-slim
# TF Serving's release that matches TensorFlow 2.21 (and tensorflow-serving-api 2.21).
ARG TF_SERVING_IMAGE=tensorflow/serving:2.21.0

FROM ${PYTHON_IMAGE} AS build
ARG MODEL_NAME=charlm
ARG TIME_BUDGET=120
ARG EXPORT_DIR=docker/no-export
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# The whole context minus .dockerignore (caches, runs, tests); exports stay in it: EXPORT_DIR copies one.
COPY . .
RUN pip install --no-cache-dir './[full]'
COPY ${EXPORT_DIR} /build/provided/
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN if find /build/provided -mindepth 1 -maxdepth 1 -type d -regex '.*/[0-9]+' | grep -q .; then \
        mkdir -p /build/export && cp -r /build/provided "/build/export/${MODEL_NAME}"; \
    else \
        rnnserve train charlm --time-budget "${TIME_BUDGET}" --out /build/run --export-base "/build/export/${MODEL_NAME}"; \
    fi

# The embedded server (`rnnserve serve`) on the same export and config files.
FROM ${PYTHON_IMAGE} AS embedded
ARG MODEL_NAME=charlm
ENV PATH=/opt/venv/bin:$PATH MODEL_NAME=${MODEL_NAME} TF_CPP_MIN_LOG_LEVEL=2
RUN groupadd --gid 10001 rnnserve && useradd --create-home --uid 10001 --gid 10001 rnnserve
COPY --from=build /opt/venv /opt/venv
COPY --from=build /build/export/${MODEL_NAME} /models/${MODEL_NAME}
COPY docker/models.config docker/monitoring.config docker/batching.config /config/
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
COPY docker/models.config docker/monitoring.config docker/batching.config /config/
USER 10001:10001
EXPOSE 8500 8501
CMD ["--model_config_file=/config/models.config", "--model_config_file_poll_wait_seconds=60", \
     "--monitoring_config_file=/config/monitoring.config"]
