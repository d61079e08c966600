#!/bin/sh
# make docker-smoke: build the sealfl image with no registry and run a federation in four
# containers (homo-lr PS, key broker, 2 workers, each from its organisation's bundle) on an
# internal Docker network, then an infer query (tee-mode server and a client, two more
# containers). Opt-in (root, minutes): not part of `make test`.
#
# 1. a Docker engine: docker.io and debootstrap from the Debian mirror if missing; dockerd is
#    started here if none runs (no default bridge, no iptables rules, no ip_forward) and
#    stopped again by its PID at the end;
# 2. the base image: `debootstrap --variant=minbase bookworm` + `docker import` (cached);
# 3. `docker build` from a temporary context (the repository's image files plus this host's
#    CA bundle for pip, which stays in the build stage);
# 4. platforms, data, project.toml and `sealfl provision` in one-shot containers, then the key
#    broker, the PS and the two workers in four containers sharing nothing but the network;
# 5. hospital-a's infer server (sealing its model in its simulated enclave) and clinic-c's
#    client, which trusts it by the policy in clinic-c's bundle and queries it once.
set -eu

REPO=$(cd "$(dirname "$0")/../.." && pwd)
WORK=${SEALFL_SMOKE_DIR:-/tmp/sealfl-docker-smoke}
IMAGE=${SEALFL_SMOKE_IMAGE:-sealfl:smoke}
BASE=${SEALFL_SMOKE_BASE:-sealfl-base:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
NET=sealfl-smoke
ITERATIONS=${SEALFL_SMOKE_ITERATIONS:-20}
DOCKERD_PID=

log() { printf '%s docker-smoke: %s\n' "$(date +%H:%M:%S)" "$*"; }

cleanup() {
    docker rm -f sealfl-smoke-kbs sealfl-smoke-ps sealfl-smoke-w1 sealfl-smoke-w2 \
        sealfl-smoke-infer-server sealfl-smoke-infer-client >/dev/null 2>&1 || true
    docker network rm "$NET" >/dev/null 2>&1 || true
    if [ -n "$DOCKERD_PID" ]; then
        log "stopping dockerd ($DOCKERD_PID)"
        kill "$DOCKERD_PID" 2>/dev/null || true
        wait "$DOCKERD_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT INT TERM

[ "$(id -u)" = 0 ] || { echo "docker-smoke: needs root (installs and starts a Docker engine)"; exit 2; }
START=$(date +%s)
mkdir -p "$WORK"

if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
    log "installing docker.io and debootstrap"
    apt-get install -y -q docker.io debootstrap >"$WORK/apt.log" 2>&1 \
        || { apt-get update -q >>"$WORK/apt.log" 2>&1 && apt-get install -y -q docker.io debootstrap >>"$WORK/apt.log" 2>&1; }
fi
if ! docker info >/dev/null 2>&1; then
    log "starting dockerd"
    DOCKERD=$(command -v dockerd)
    "$DOCKERD" --bridge=none --iptables=false --ip-forward=false --ip-masq=false \
        --data-root "$WORK/docker" --exec-root "$WORK/exec" --pidfile "$WORK/dockerd.pid" \
        --host "unix:///var/run/docker.sock" >"$WORK/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    i=0
    until docker info >/dev/null 2>&1; do
        i=$((i + 1))
        [ $i -lt 60 ] || { tail -20 "$WORK/dockerd.log"; echo "docker-smoke: dockerd did not start"; exit 1; }
        kill -0 "$DOCKERD_PID" 2>/dev/null || { tail -20 "$WORK/dockerd.log"; echo "docker-smoke: dockerd exited"; exit 1; }
        sleep 0.5
    done
fi

if ! docker image inspect "$BASE" >/dev/null 2>&1; then
    log "debootstrap bookworm ($MIRROR) -> $BASE"
    rm -rf "$WORK/rootfs"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1
    rm -rf "$WORK/rootfs/var/cache/apt/archives/"*.deb "$WORK/rootfs/var/lib/apt/lists/"*
    tar -C "$WORK/rootfs" -c . | docker import - "$BASE" >/dev/null
    rm -rf "$WORK/rootfs"
fi

log "building $IMAGE"
CONTEXT="$WORK/context"
rm -rf "$CONTEXT" && mkdir -p "$CONTEXT"
cp -r "$REPO/pyproject.toml" "$REPO/constraints.txt" "$REPO/README.md" "$REPO/Dockerfile" \
    "$REPO/.dockerignore" "$REPO/src" "$REPO/deploy" "$CONTEXT/"
cp /etc/ssl/certs/ca-certificates.crt "$CONTEXT/deploy/docker/build-ca.pem"
BUILD_START=$(date +%s)
docker build --network host --build-arg BASE="$BASE" -t "$IMAGE" "$CONTEXT" >"$WORK/build.log" 2>&1 \
    || { tail -30 "$WORK/build.log"; exit 1; }
BUILD_END=$(date +%s)

# The federation's files, made the way each operator would, in one-shot containers.
FED="$WORK/fed"
rm -rf "$FED" && mkdir -p "$FED" && chown 10001:10001 "$FED"
run1() { docker run --rm --network none -u 10001:10001 -v "$FED:/fed" -w /fed "$IMAGE" "$@"; }
run1 homo-lr prepare --run-dir /fed/prep --workers 2 >/dev/null
run1 model keygen --out /fed/owner --name model-owner >/dev/null
for org in hospital-a clinic-b clinic-c; do
    mkdir -p "$FED/hosts/$org/out" "$FED/hosts/$org/data"
done
cp "$FED/prep/data/breast_homo_test.csv" "$FED/hosts/hospital-a/data/test.csv"
cp "$FED/prep/data/breast_homo_guest.csv" "$FED/hosts/clinic-b/data/train.csv"
cp "$FED/prep/data/breast_homo_host.csv" "$FED/hosts/clinic-c/data/train.csv"
cp "$FED/prep/data/breast_homo_test.csv" "$FED/hosts/clinic-c/data/infer-query.csv"
chown -R 10001:10001 "$FED"
run1 infer train --data /fed/hosts/clinic-b/data/train.csv \
    --out /fed/hosts/hospital-a/data/infer-model.npz >/dev/null
fp() { run1 attest simulated-platform "/fed/hosts/$1/platform" | grep -Eo '[0-9a-f]{64}' | head -1; }
FP_A=$(fp hospital-a); FP_B=$(fp clinic-b); FP_C=$(fp clinic-c)
sed -e "s/@FP_A@/$FP_A/" -e "s/@FP_B@/$FP_B/" -e "s/@FP_C@/$FP_C/" \
    -e "s/@ITERATIONS@/$ITERATIONS/g" "$REPO/deploy/compose/project.example.toml" > "$FED/project.toml"
chown 10001:10001 "$FED/project.toml"
FINGERPRINT=$(run1 provision /fed/project.toml --out /fed/bundles --key /fed/provisioner.key \
    --roles /opt/sealfl/deploy/gramine/roles.toml | grep -Eo '[0-9a-f]{64}' | tail -1)
log "provisioned three bundles (provisioner $FINGERPRINT)"

# Addresses come from the host (SEALFL_PEERS), as in any deployment: fixed IPs on an internal
# network (dockerd runs without iptables here, so Docker's embedded DNS is not available).
docker network create --internal --subnet 10.213.0.0/24 "$NET" >/dev/null
PS_AT=10.213.0.10:50070
KBS_AT=10.213.0.11:50080
INFER_AT=10.213.0.12:50100
party() { # container host-dir party role ip peers
    docker run -d --name "$1" --network "$NET" --ip "$5" --read-only --tmpfs /tmp \
        -u 10001:10001 -e SEALFL_PROVISIONER="$FINGERPRINT" -e SEALFL_PEERS="$6" \
        -v "$FED/bundles/$2:/bundle:ro" -v "$FED/hosts/$2:/host" \
        "$IMAGE" bundle run /bundle --party "$3" --role "$4" >/dev/null
}
RUN_START=$(date +%s)
party sealfl-smoke-kbs hospital-a kbs kbs/broker 10.213.0.11 ""
party sealfl-smoke-ps hospital-a ps homo-lr/ps 10.213.0.10 "kbs=$KBS_AT"
party sealfl-smoke-w1 clinic-b worker-1 homo-lr/worker 10.213.0.21 "ps=$PS_AT"
party sealfl-smoke-w2 clinic-c worker-2 homo-lr/worker 10.213.0.22 "ps=$PS_AT"
STATUS=0
for c in sealfl-smoke-w1 sealfl-smoke-w2 sealfl-smoke-ps; do
    code=$(timeout 600 docker wait "$c" || echo timeout)
    [ "$code" = 0 ] || { STATUS=1; log "$c exited with $code"; docker logs "$c" 2>&1 | tail -20; }
done
RUN_END=$(date +%s)
docker logs sealfl-smoke-w1 2>&1 | grep -E '^iter' | tail -1
[ -f "$FED/hosts/hospital-a/out/ps/homo_lr_model.sealed" ] || { STATUS=1; log "no sealed model"; }

party sealfl-smoke-infer-server hospital-a infer-server infer/server 10.213.0.12 ""
i=0
until docker logs sealfl-smoke-infer-server 2>/dev/null | grep -q '"event": "ready"'; do
    i=$((i + 1))
    if [ $i -ge 240 ] || [ "$(docker inspect -f '{{.State.Running}}' sealfl-smoke-infer-server)" != true ]; then
        STATUS=1; log "infer server not ready"; docker logs sealfl-smoke-infer-server 2>&1 | tail -20; break
    fi
    sleep 0.5
done
party sealfl-smoke-infer-client clinic-c infer-client infer/client 10.213.0.31 "server=$INFER_AT"
code=$(timeout 120 docker wait sealfl-smoke-infer-client || echo timeout)
[ "$code" = 0 ] || { STATUS=1; log "infer client exited with $code"; docker logs sealfl-smoke-infer-client 2>&1 | tail -20; }
docker logs sealfl-smoke-infer-client 2>&1 | grep 'rows answered' || STATUS=1
[ -f "$FED/hosts/clinic-c/out/infer-predictions.csv" ] || { STATUS=1; log "no predictions"; }
INFER_END=$(date +%s)
SIZE=$(docker image inspect "$IMAGE" --format '{{.Size}}')
log "image $IMAGE: $((SIZE / 1000000)) MB; build $((BUILD_END - BUILD_START)) s; homo-lr federation $((RUN_END - RUN_START)) s; infer query $((INFER_END - RUN_END)) s; total $(( $(date +%s) - START )) s"
[ $STATUS = 0 ] && log "passed" || log "FAILED"
exit $STATUS
