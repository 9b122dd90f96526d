# cnnlab on a GPU: docker build -t cnnlab . ; README.md's Docker section shows how to run it.
# The official PyTorch runtime image brings CUDA builds of torch and torchvision; pip adds the
# rest, with the same command as README.md's install line.
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /cnnlab
COPY pyproject.toml README.md ./
COPY src ./src
COPY conf ./conf
COPY tests ./tests
RUN pip install -e ".[dev]" && python -c "import cnnlab, hydra_plugins.cnnlab_gpus"

# Runs as a user of its own; data/ and logs/ are meant to be mounted (docker run -v).
RUN useradd --create-home --uid 1000 cnnlab && mkdir -p data logs && chown 1000 data logs
USER 1000

ENTRYPOINT ["python", "src/train.py"]
