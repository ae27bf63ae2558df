#!/usr/bin/env bash
# Prepare a Debian machine for Vapor development: the Debian packages the
# project needs, a virtualenv with the project installed, the pinned
# Kubernetes binaries (built once from their Go modules, then cached) and the
# Debian test guest image (built once with debootstrap, then cached).
# Safe to run again; it only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# Debian packages: what the code and tests use from the host (libvirt and
# QEMU for VMs, headers to build libvirt-python and systemd-python, PAM,
# iproute2 and filesystem tools for host configuration, Docker and containerd
# for the container endpoints and image builds, systemd-journal-remote to
# write fixture journals; dnsmasq for libvirt's NAT networks, OVMF for UEFI
# guests, debootstrap to build the test guest (GRUB comes inside it), ssh to
# reach it); containerd and the reference CNI plugins for the kubelet node of
# the tests marked `cluster`; chromium for the web console's browser tests (driven by Playwright through its
# executable, never a downloaded browser); Node.js (Debian's 18 or newer) and npm build the console.
packages=(python3-venv python3-dev gcc git make pkg-config
  libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 qemu-utils libvirt-dev
  libsystemd-dev iproute2 util-linux xfsprogs e2fsprogs procps passwd
  docker.io busybox-static containerd containernetworking-plugins docker-registry debootstrap systemd-journal-remote
  dnsmasq-base ovmf openssh-client chromium)
command -v npm >/dev/null || packages+=(nodejs npm)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# pyenv or another Python that brings venv needs no python3-venv package.
if python3 -c 'import venv, ensurepip' 2>/dev/null; then
  missing=("${missing[@]/python3-venv/}")
fi
missing=($(printf '%s\n' "${missing[@]}" | grep -v '^$' || true))
if [[ ${#missing[@]} -gt 0 ]]; then
  if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; else SUDO=; fi
  log "installing Debian packages: ${missing[*]}"
  # Install only: the tests start libvirtd themselves, and a dev machine's
  # services are its owner's business (policy-rc.d keeps apt from starting them).
  had_policy=0; [[ -e /usr/sbin/policy-rc.d ]] && had_policy=1
  [[ $had_policy == 1 ]] || printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  trap '[[ $had_policy == 1 ]] || $SUDO rm -f /usr/sbin/policy-rc.d' EXIT
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! command -v go >/dev/null && [[ -z ${KUBE_APISERVER:-} ]]; then
  log "Go (1.21 or newer) is needed to build kube-apiserver, etcd and kubectl;"
  log "install it, or point KUBE_APISERVER, ETCD and KUBECTL at binaries you have."
  exit 1
fi

make --no-print-directory install
# The web console (ui/): npm ci from the lockfile, types from the gateway's OpenAPI, Vite build into api/static.
make --no-print-directory ui
make --no-print-directory binaries
# The Debian test guest (tests marked `guest`): built once, then cached.
make --no-print-directory guest-image
log "ready: 'make dev' starts Vapor, 'make test' runs the tests"
