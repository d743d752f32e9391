# The boot rehearsal's CPU Triton image: the same Triton 2.51 server the CPU tests run (the
# `tritonserver` binary and Python backend inside the nvidia-pytriton 0.7.0 wheel), with
# onnxruntime for the cpu flavour's model.py. `tritonserver` on PATH is a wrapper that adds
# what the NGC image has built in (backend and cache folders, CPU-only memory pools), so the
# command in ami/compose.yaml runs unchanged; python3 is there for its health check.
ARG PYTHON_BASE=cvstack-rehearsal/python:3.11
FROM ${PYTHON_BASE}

ARG TRITON_WHEEL=nvidia-pytriton==0.7.0
RUN pip install --quiet --no-deps "${TRITON_WHEEL}" \
    && pip install --quiet numpy onnxruntime \
    && triton=/opt/venv/lib/python3.11/site-packages/pytriton/tritonserver \
    && install -d /opt/tritonserver/backends/python \
    && cp "$triton/backends/python/libtriton_python.so" \
          "$triton/backends/python/triton_python_backend_utils.py" \
          "$triton/python_backend_stubs/3.11/triton_python_backend_stub" \
          /opt/tritonserver/backends/python/
COPY tritonserver /usr/local/bin/tritonserver
ENV HOME=/tmp
