"""The Dockerfile and docker/ files, checked statically (there is no Docker engine here).

Oracles: hadolint; the repository tree (every COPY source exists); TF
Serving's text-proto formats (the config files parse with protobuf and pass
the same checks `rnnserve serve` applies); the installed
tensorflow-serving-api version (the image tag must be the matching release).
"""

import os
import re
import shutil
import subprocess
import sys
from importlib import metadata

import pytest
from conftest import REPO_ROOT

from rnnserve.serving.config import check_batching, read_model_config_file, read_text_proto
from rnnserve.serving.config_protos import BatchingParameters, MonitoringConfig

DOCKERFILE = os.path.join(REPO_ROOT, "Dockerfile")
DOCKER_DIR = os.path.join(REPO_ROOT, "docker")


def instructions():
    """(INSTRUCTION, arguments) pairs with continuation lines joined and comments dropped."""
    text = open(DOCKERFILE, encoding="utf-8").read()
    text = re.sub(r"\\\n", " ", text)
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def stages():
    """stage name -> list of its (INSTRUCTION, arguments); also the global ARG defaults."""
    result, current, args = {}, None, {}
    for keyword, rest in instructions():
        if keyword == "FROM":
            image, _, name = rest.partition(" AS ")
            current = name.strip()
            result[current] = [("FROM", image.strip())]
        elif current is None and keyword == "ARG":
            key, _, value = rest.partition("=")
            args[key] = value
        elif current is not None:
            result[current].append((keyword, rest))
    return result, args


def stage_args(stage):
    return dict(rest.partition("=")[::2] for keyword, rest in stage if keyword == "ARG")


def test_hadolint_is_clean():
    hadolint = shutil.which("hadolint") or os.path.join(os.path.dirname(sys.executable), "hadolint")
    result = subprocess.run([hadolint, DOCKERFILE], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_stages_and_final_image_is_pinned_tf_serving_matching_tf():
    found, args = stages()
    assert list(found) == ["venv", "build", "embedded", "tfserving"]  # tfserving last = the default target
    # The serving image is the venv stage plus an export: the venv is neither copied nor digested again.
    assert found["build"][0] == found["embedded"][0] == ("FROM", "venv")
    image = args["TF_SERVING_IMAGE"]
    match = re.fullmatch(r"tensorflow/serving:(\d+)\.(\d+)\.(\d+)", image)
    assert match, image
    api = metadata.version("tensorflow-serving-api").split(".")
    assert match.groups()[:2] == tuple(api[:2])
    assert found["tfserving"][0] == ("FROM", "${TF_SERVING_IMAGE}")


def test_every_copy_source_exists_in_the_build_context():
    found, _ = stages()
    for name, stage in found.items():
        defaults = stage_args(stage)
        for keyword, rest in stage:
            if keyword != "COPY" or rest.startswith("--from"):
                continue
            sources = [word for word in rest.split()[:-1] if not word.startswith("--")]  # --chmod=...
            for source in sources:
                source = re.sub(r"\$\{(\w+)\}", lambda m, d=defaults: d[m.group(1)], source)
                assert os.path.exists(os.path.join(REPO_ROOT, source)), (name, source)


def test_build_stage_trains_and_exports_where_the_serving_stages_copy_from():
    found, _ = stages()
    # The server and training stack (the base install is the client only).
    assert ("RUN", "pip install --no-cache-dir './[full]' && rm -rf /src") in found["venv"]
    # Only what pip reads is copied before it: a new export keeps the install layer cached.
    copied = [rest.split()[0] for keyword, rest in found["venv"] if keyword == "COPY"]
    assert "." not in copied and "pyproject.toml" in copied
    build = " ".join(rest for _, rest in found["build"])
    assert (
        'rnnserve train charlm --time-budget "${TIME_BUDGET}" --out /build/run --export-base "/build/export/${MODEL_NAME}"'
        in build
    )
    for name in ("embedded", "tfserving"):
        stage = found[name]
        assert stage_args(stage)["MODEL_NAME"] == stage_args(found["build"])["MODEL_NAME"] == "charlm"
        assert ("COPY", "--from=build /build/export/${MODEL_NAME} /models/${MODEL_NAME}") in stage
        assert ("EXPOSE", "8500 8501") in stage
        users = [rest for keyword, rest in stage if keyword == "USER"]
        assert users and users[-1].split(":")[0] not in ("0", "root")
    # The image's user (10001) can read the export, whatever modes it was written with.
    assert build.endswith("&& chmod -R a+rX /build/export"), build


def test_config_files_parse_and_agree_with_the_image_layout():
    config = read_model_config_file(os.path.join(DOCKER_DIR, "models.config"))
    (model,) = config.model_config_list.config
    assert (model.name, model.base_path) == ("charlm", "/models/charlm")
    monitoring = read_text_proto(
        os.path.join(DOCKER_DIR, "monitoring.config"), MonitoringConfig(), "--monitoring_config_file"
    )
    assert monitoring.prometheus_config.enable
    assert monitoring.prometheus_config.path == "/monitoring/prometheus/metrics"
    batching = read_text_proto(
        os.path.join(DOCKER_DIR, "batching.config"), BatchingParameters(), "--batching_parameters_file"
    )
    check_batching(batching)
    found, _ = stages()
    for name in ("embedded", "tfserving"):
        copied = [rest for keyword, rest in found[name] if keyword == "COPY" and "/config/" in rest]
        assert copied == [
            "--chmod=0644 docker/models.config docker/monitoring.config docker/batching.config /config/"
        ]
    cmd = dict(found["tfserving"])["CMD"]
    assert (
        "--model_config_file=/config/models.config" in cmd
        and "--monitoring_config_file=/config/monitoring.config" in cmd
    )


def test_compose_uses_the_dockerfile_targets_ports_and_model():
    text = open(os.path.join(DOCKER_DIR, "compose.yaml"), encoding="utf-8").read()
    found, _ = stages()
    for target in re.findall(r"target:\s*(\S+)", text):
        assert target in found
    assert '"127.0.0.1:8500:8500"' in text and '"127.0.0.1:8501:8501"' in text
    assert "dockerfile: Dockerfile" in text and "context: .." in text
    assert "--server tfserving:8500 --model charlm" in text


@pytest.mark.parametrize(
    "flag", ["--model_config_file", "--monitoring_config_file", "--batching_parameters_file"]
)
def test_readme_documents_the_container_commands(flag):
    readme = open(os.path.join(REPO_ROOT, "README.md"), encoding="utf-8").read()
    section = readme.split("## Containerized serving", 1)[1]
    assert "docker build" in section and "docker compose -f docker/compose.yaml up --build" in section
    assert flag in section
