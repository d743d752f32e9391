# The boot rehearsal's stand-in for python:3.11-slim-bookworm (no registry is reachable here):
# the instance rootfs's own Python 3.11 (docker import of ami/rehearsal/rootfs.sh's tarball)
# in a venv that is first on PATH, so `python`, `python3`, `pip` and console scripts work as in
# the official image. pip installs only from the wheelhouse baked in below (no index, no
# network), so backend/Dockerfile builds unchanged with `--build-arg PYTHON_BASE=<this>`.
ARG DEBIAN_BASE=cvstack-rehearsal/debian:bookworm
FROM ${DEBIAN_BASE}

ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    PIP_NO_INDEX=1 \
    PIP_FIND_LINKS=/opt/wheelhouse \
    PIP_DISABLE_PIP_VERSION_CHECK=1

COPY wheelhouse/ /opt/wheelhouse/
RUN python3 -m venv /opt/venv \
    && pip install --quiet "setuptools>=69" wheel
CMD ["python3"]
