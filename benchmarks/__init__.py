"""Development tools, apart from what a run imports: cnnlab against a plain PyTorch loop
(speed.py), the data path (data_path.py), the GPU check (gpu/) and its --wheels (wheels.py)."""
