#!/usr/bin/env bash
# Build, when missing, a local Lambda-compatible python3.12 x86_64 base image for `sam local` (no container
# registry is reachable here, so public.ecr.aws/lambda/python:3.12 cannot be pulled). Prints the image
# reference on stdout (everything else goes to stderr), e.g. abtest-lambda-python3.12:1a2b3c4d5e6f.
#
# What goes in, and why each comes from where it does (here only Debian's packages and PyPI are reachable):
#   - a minimal Debian bookworm root file system, `debootstrap --variant=minbase` from the Debian archive the
#     machine's apt uses, plus the shared libraries CPython's extension modules load (ssl, sqlite3, ffi, ...);
#   - CPython 3.12 under /var/lang, as in Lambda's image: Debian bookworm has only 3.11 and no package
#     registry here ships a CPython build, so it is copied from the machine's own 3.12 (pyenv's 3.12.1, the
#     one `make build` already needs), without its tests, IDLE, tkinter and site-packages;
#   - awslambdaric (the runtime interface client) in /var/runtime and boto3 in site-packages, pinned with
#     hashes in requirements.txt beside this file, from PyPI wheels;
#   - bootstrap beside this file as /var/runtime/bootstrap, which the emulator starts.
# `sam local` adds the Runtime Interface Emulator itself (the SAM CLI wheel ships it) and the layers.
#
# The tag is a hash of this script, bootstrap, requirements.txt and the Python version: change any and the
# next run builds a new image; otherwise an existing image is reused and nothing is downloaded.
# Settings (environment): PY312 (a python3.12 command), DEBIAN_MIRROR (default: the archive apt uses for
# bookworm, read from APT_ETC, default /etc/apt), SAMLOCAL_CACHE (default .samlocal).
set -euo pipefail
export PIP_ROOT_USER_ACTION=ignore
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cache="${SAMLOCAL_CACHE:-$root/.samlocal}"
repo="abtest-lambda-python3.12"
packages="libssl3,libsqlite3-0,libffi8,libexpat1,libreadline8,libncursesw6,libuuid1,libtirpc3,libnsl2,ca-certificates,tzdata"

log() { echo "samimage: $*" >&2; }

# The archive this machine's apt already uses for Debian bookworm (the suite debootstrap installs): the
# first "deb" source listing that suite, one-line ("deb [options] URI bookworm ...") or deb822 (a
# stanza with "Types: deb", "Suites: ... bookworm ..." and its "URIs:"). No host is named here.
apt_archive() {
    local etc="${APT_ETC:-/etc/apt}"
    {
        cat "$etc"/sources.list "$etc"/sources.list.d/*.list 2>/dev/null |
            awk '$1 == "deb" { i = 2; if ($i ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ }
                                if ($(i + 1) == "bookworm") { print $i; exit } }' || true
        cat "$etc"/sources.list.d/*.sources 2>/dev/null |
            awk 'BEGIN { RS = "" } {
                types = ""; uris = ""; suites = ""; enabled = "yes"
                n = split($0, lines, "\n")
                for (k = 1; k <= n; k++) {
                    if (lines[k] ~ /^Types:/) types = " " substr(lines[k], 7) " "
                    else if (lines[k] ~ /^URIs:/) uris = substr(lines[k], 6)
                    else if (lines[k] ~ /^Suites:/) suites = " " substr(lines[k], 8) " "
                    else if (lines[k] ~ /^Enabled:/) enabled = substr(lines[k], 9)
                }
                gsub(/[ \t]/, "", enabled)
                if (enabled != "no" && types ~ /[ \t]deb[ \t]/ && suites ~ /[ \t]bookworm[ \t]/) {
                    m = split(uris, u, /[ \t]+/)
                    for (j = 1; j <= m; j++) if (u[j] != "") { print u[j]; exit }
                }
            }' || true
    } | head -n 1 || true
}

if [ "${1:-}" = "--print-archive" ]; then  # what the build would use (for tests and curious readers)
    archive="$(apt_archive)"
    [ -n "$archive" ] || { log "no apt source of Debian bookworm in ${APT_ETC:-/etc/apt}"; exit 3; }
    echo "$archive"
    exit 0
fi

py312="${PY312:-}"
if [ -z "$py312" ]; then
    if PYENV_VERSION=3.12.1 python3.12 -c '' 2>/dev/null; then
        py312="env PYENV_VERSION=3.12.1 python3.12"
    else
        py312="python3.12"
    fi
fi
if ! pyinfo="$($py312 -c 'import platform, sys; print(sys.base_prefix, platform.python_version(), platform.machine())' 2>/dev/null)"; then
    log "no Python 3.12 found (set PY312 to a python3.12 command): the image copies it under /var/lang"
    exit 3
fi
read -r pyprefix pyversion pymachine <<<"$pyinfo"
case "$pyversion" in 3.12.*) ;; *) log "PY312 runs Python $pyversion, not 3.12"; exit 3 ;; esac
if [ "$pymachine" != x86_64 ]; then
    log "this builds an x86_64 image; $pyprefix is $pymachine"
    exit 3
fi

command -v docker >/dev/null && docker info >/dev/null 2>&1 || { log "Docker is not running (docker info failed)"; exit 3; }

tag="$(cat "$0" "$here/bootstrap" "$here/requirements.txt" <(echo "$pyversion") | sha256sum | cut -c1-12)"
image="$repo:$tag"
if docker image inspect "$image" >/dev/null 2>&1; then
    log "$image exists"
    echo "$image"
    exit 0
fi

if [ -z "${DEBIAN_MIRROR:-}" ]; then
    DEBIAN_MIRROR="$(apt_archive)"
    [ -n "$DEBIAN_MIRROR" ] || {
        log "no apt source of Debian bookworm in ${APT_ETC:-/etc/apt}: set DEBIAN_MIRROR to an archive"
        exit 3
    }
fi
command -v debootstrap >/dev/null || { log "debootstrap is missing (apt-get install debootstrap)"; exit 3; }

work="$cache/image-$tag"
rm -rf "$work"
mkdir -p "$work" "$cache/wheels"
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"

log "debootstrap bookworm from $DEBIAN_MIRROR (about a minute)"
debootstrap --variant=minbase --include="$packages" bookworm "$rootfs" "$DEBIAN_MIRROR" >"$work/debootstrap.log" 2>&1 ||
    { tail -20 "$work/debootstrap.log" >&2; exit 1; }
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* \
    "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*

log "Python $pyversion from $pyprefix into /var/lang"
mkdir -p "$rootfs/var/lang" "$rootfs/var/runtime" "$rootfs/var/task" "$rootfs/opt"
tar -C "$pyprefix" -c \
    --exclude='lib/python3.12/test' --exclude='lib/python3.12/idlelib' --exclude='lib/python3.12/tkinter' \
    --exclude='lib/python3.12/turtledemo' --exclude='lib/python3.12/ensurepip' \
    --exclude='lib/python3.12/lib-dynload/_tkinter*' --exclude='lib/python3.12/config-3.12-*' \
    --exclude='lib/python3.12/site-packages/*' --exclude='lib/pkgconfig' --exclude='share' --exclude='include' \
    --exclude='bin/pip*' --exclude='bin/idle*' --exclude='bin/pydoc*' --exclude='bin/2to3*' \
    --exclude='bin/*-config' --exclude='bin/*-gdb.py' \
    bin lib | tar -C "$rootfs/var/lang" -x

log "runtime interface client and boto3 (pinned, from PyPI wheels)"
pipflags=(--disable-pip-version-check --quiet --only-binary=:all: --platform manylinux2014_x86_64
    --python-version 3.12 --implementation cp --abi cp312)
$py312 -m pip download "${pipflags[@]}" --require-hashes --no-deps -r "$here/requirements.txt" -d "$cache/wheels" >&2
# The requirements' sections: the pins after the comment line that starts with "# DIRECTORY:".
split() { awk -v head="# $1:" 'index($0, head) == 1 { on = 1; next } /^#/ { on = 0 } on && NF' "$here/requirements.txt"; }
split '/var/runtime' >"$work/runtime.txt"
split '/var/lang/lib/python3.12/site-packages' >"$work/lang.txt"
[ -s "$work/runtime.txt" ] && [ -s "$work/lang.txt" ] || { log "requirements.txt lost its section comments"; exit 1; }
$py312 -m pip install "${pipflags[@]}" --no-index --find-links "$cache/wheels" --require-hashes --no-deps \
    --target "$rootfs/var/runtime" -r "$work/runtime.txt" >&2
$py312 -m pip install "${pipflags[@]}" --no-index --find-links "$cache/wheels" --require-hashes --no-deps \
    --target "$rootfs/var/lang/lib/python3.12/site-packages" -r "$work/lang.txt" >&2
install -m 0755 "$here/bootstrap" "$rootfs/var/runtime/bootstrap"

log "docker import $image"
tar -C "$rootfs" -c . | docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV TZ=:/etc/localtime' \
    --change 'ENV PATH=/var/lang/bin:/usr/local/bin:/usr/bin:/bin:/opt/bin' \
    --change 'ENV LD_LIBRARY_PATH=/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib' \
    --change 'ENV LAMBDA_TASK_ROOT=/var/task' \
    --change 'ENV LAMBDA_RUNTIME_DIR=/var/runtime' \
    --change 'WORKDIR /var/task' \
    --change 'ENTRYPOINT ["/var/runtime/bootstrap"]' \
    - "$image" >/dev/null
# The same check the runtime needs: the interpreter, its extension modules' libraries, the client, boto3.
docker run --rm --env PYTHONPATH=/var/runtime --entrypoint /var/lang/bin/python3.12 "$image" -c \
    'import ssl, sqlite3, ctypes, lzma, bz2, zlib, uuid, decimal, readline, json; import awslambdaric, boto3' \
    >&2 || { docker rmi "$image" >/dev/null; log "the image's Python does not import its modules"; exit 1; }
docker tag "$image" "$repo:latest" >/dev/null
# Earlier builds (other tags of this repository) are superseded: free their space.
docker image ls "$repo" --format '{{.Repository}}:{{.Tag}}' | grep -v -x -e "$image" -e "$repo:latest" |
    xargs -r docker rmi >/dev/null 2>&1 || true
log "built $image"
echo "$image"
