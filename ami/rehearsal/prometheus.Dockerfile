# The boot rehearsal's stand-in for prom/prometheus: Debian's prometheus binary (static but for
# libc) on the instance rootfs base, with the official image's entrypoint, user and data folder.
ARG DEBIAN_BASE=cvstack-rehearsal/debian:bookworm
FROM ${DEBIAN_BASE}
COPY prometheus /bin/prometheus
RUN install -d -o nobody -g nogroup /prometheus
USER nobody
WORKDIR /prometheus
ENTRYPOINT ["/bin/prometheus"]
