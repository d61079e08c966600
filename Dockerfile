# One image for every sealfl role (homo-lr, infer, hfl and vfl with EXTRAS=hfl, the broker):
#   docker build -t sealfl .                                  (BASE: any Debian 12 with python3.11)
#   docker run --rm sealfl bundle run /bundle --party ps --provisioner <fingerprint>
# A party starts from its organisation's bundle (`sealfl provision`), mounted read-only at
# /bundle; data and outputs are volumes. The runtime stage has no compiler, no pip cache, no
# __pycache__, no benchmark-only packages (deploy/docker/requirements-runtime.txt), and runs as
# uid 10001. `make docker-smoke` builds it from a debootstrap base and runs a federation.
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS build
ARG EXTRAS=
# A CA bundle for pip behind a TLS-intercepting proxy (the smoke build passes the host's);
# it stays in this stage only.
ARG PIP_CERT=/etc/ssl/certs/ca-certificates.crt
COPY deploy/docker/ /tmp/build-ca/
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
RUN if [ -f /tmp/build-ca/build-ca.pem ]; then export PIP_CERT=/tmp/build-ca/build-ca.pem; fi \
 && python3 -m venv /opt/sealfl/venv \
 && /opt/sealfl/venv/bin/python -m pip install --upgrade --no-compile "pip>=23"
COPY pyproject.toml constraints.txt README.md /src/
COPY deploy/docker/requirements-runtime.txt /src/deploy/docker/
COPY src /src/src
RUN if [ -f /tmp/build-ca/build-ca.pem ]; then export PIP_CERT=/tmp/build-ca/build-ca.pem; fi \
 && cd /src \
 && /opt/sealfl/venv/bin/pip install --no-compile -c constraints.txt \
        -r deploy/docker/requirements-runtime.txt \
 && if [ -n "$EXTRAS" ]; then \
        /opt/sealfl/venv/bin/pip install --no-compile -c constraints.txt ".[$EXTRAS]"; fi \
 && /opt/sealfl/venv/bin/pip install --no-compile --no-deps . \
 && /opt/sealfl/venv/bin/pip uninstall -y pip \
 && find /opt/sealfl/venv -name __pycache__ -prune -exec rm -rf {} + \
 && find /opt/sealfl/venv -name '*.dist-info' -prune -exec rm -f {}/RECORD \;

FROM ${BASE} AS runtime
LABEL org.opencontainers.image.title="sealfl" \
      org.opencontainers.image.description="sealfl parties: homo-lr, infer, hfl, vfl, key broker"
RUN groupadd --system --gid 10001 sealfl \
 && useradd --system --uid 10001 --gid sealfl --home-dir /var/lib/sealfl --create-home sealfl \
 && mkdir -p /bundle /data /out && chown sealfl:sealfl /data /out
COPY --from=build /opt/sealfl/venv /opt/sealfl/venv
COPY deploy/gramine /opt/sealfl/deploy/gramine
ENV PATH=/opt/sealfl/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /var/lib/sealfl
ENTRYPOINT ["sealfl"]
CMD ["--help"]
