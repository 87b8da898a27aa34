# wren in an image that holds nothing but wren: the binary is static, so it
# needs no libc, no shell and no base image (and the build needs no registry).
#
# Build it with `make image`: scripts/image.sh assembles the build context
# (the static binary and an empty data folder) and runs podman or docker.
FROM scratch

COPY wren /wren
# The data folder must exist in the image, owned by the runtime user, so
# that a fresh volume mounted there is writable by wren.
COPY --chown=10001:10001 data /data

ENV WREN_HOST=0.0.0.0 PORT=50505 WREN_DATA_DIR=/data
# 50505: the seed's port for plain HTTP; 443 and 80: HTTPS and its redirect
# (PORT=443 with --acme-domain or --tls-cert, and --redirect-port 80).
EXPOSE 50505 443 80
VOLUME /data
USER 10001:10001
ENTRYPOINT ["/wren"]
