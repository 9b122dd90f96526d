# A GPU image for cnnlab runs: docker build -t cnnlab . && docker run --gpus all -v $PWD/data:/cnnlab/data -v $PWD/logs:/cnnlab/logs cnnlab model=nin
# The base image brings CUDA builds of torch and torchvision; pip adds the rest.
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime

WORKDIR /cnnlab
COPY pyproject.toml README.md ./
COPY src ./src
COPY conf ./conf
RUN pip install --no-cache-dir -e . && python -c "import cnnlab"

ENTRYPOINT ["python", "src/train.py"]
