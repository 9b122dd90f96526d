# cnnlab on a GPU: docker build -t cnnlab . (or podman build); README.md's Docker section shows
# how to run it. The official PyTorch runtime image brings CUDA builds of torch and torchvision,
# 2.7.1: the oldest cnnlab is tested with (.ci/floors.txt), and CUDA 12.8 runs on every GPU from
# Volta to Blackwell. pip adds the rest with README.md's install line and keeps the base's torch.
# BASE can be any image like it (the tests build this file on a local stand-in).
ARG BASE=docker.io/pytorch/pytorch:2.7.1-cuda12.8-cudnn9-runtime
# hadolint ignore=DL3006
FROM ${BASE}

# g++: torch.compile builds its kernels with it (compile=true; runtime images have no compiler).
# tini as PID 1 passes `docker stop`'s SIGTERM on to python, which as PID 1 would ignore it
# until training has set its own handler.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++ tini \
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The base's torch and torchvision are the CUDA builds it was made for: pip may not replace them
# (PIP_CONSTRAINT, also for whatever is installed in the image later).
RUN python -c 'import importlib.metadata as m; print("\n".join(f"{p}=={m.version(p)}" for p in ("torch", "torchvision")))' \
    > /etc/cnnlab-base-versions.txt
ENV PIP_CONSTRAINT=/etc/cnnlab-base-versions.txt

WORKDIR /cnnlab
# The dependencies first, in a layer that a change of the sources does not rebuild: an editable
# install of an empty package (its .pth file names src/, which the COPY below fills).
COPY pyproject.toml ./
RUN mkdir -p src/cnnlab && touch src/cnnlab/__init__.py README.md && pip install -e ".[dev]"
COPY README.md Dockerfile .dockerignore ./
COPY .ci/floors.txt ./.ci/
COPY src ./src
COPY conf ./conf
COPY spaces ./spaces
COPY benchmarks ./benchmarks
COPY docs ./docs
COPY tests ./tests
# A few steps of training with Adam, and the best checkpoint read back for the test: an import
# check passes with versions that fail every run.
RUN python src/train.py data=fake data.dataset.train_size=64 data.batch_size=16 model=cnn_shallow \
        optimizer=adam trainer.max_epochs=1 paths.root_dir=/tmp/smoke > /tmp/smoke.log 2>&1 \
    || { tail -n 40 /tmp/smoke.log; exit 1; }; \
    rm -rf /tmp/smoke /tmp/smoke.log

# Runs as uid 1000 (its own user, or the base's where it has one); data/ and logs/ are meant to
# be mounted (docker run -v).
RUN (id 1000 >/dev/null 2>&1 || useradd --create-home --uid 1000 cnnlab) \
    && mkdir -p data logs && chown 1000 data logs
USER 1000

ENTRYPOINT ["tini", "--", "python", "src/train.py"]
