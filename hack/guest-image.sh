#!/usr/bin/env bash
# Build the test guest: a small Debian bookworm cloud image made from Debian
# packages (debootstrap), booting under SeaBIOS through GRUB, configured on
# first boot by cloud-init from a NoCloud seed (default user `debian`, DHCP on
# the first NIC through netplan and systemd-networkd, as Debian's own cloud
# images do), with the QEMU guest agent. Cached outside the checkout like the
# Kubernetes binaries and rebuilt only when this recipe changes.
#
# Usage: hack/guest-image.sh     # as root; prints the qcow2's path on stdout
#
# The image lands in $VAPOR_CACHE/guest/<recipe hash>/debian-12.qcow2 (next to
# it debian-12.qcow2.sha256, `sha256sum` format). The recipe hash covers this
# script, which holds the package list, and GUEST_COMPRESS. Progress goes to
# stderr.
#
# How the disk is made, without partition devices (this machine's loop driver
# makes none) and without mounting it: the guest's tree is built in a folder,
# mke2fs writes it as the filesystem of the partition (-d, at the partition's
# offset inside the raw file), and GRUB's boot sector and core image (with
# the modules to read that partition) go in the MBR and the gap before it.
# (extlinux installs only into a mounted filesystem.) Where /dev/kvm is
# kvm_pvm, as on this project's machines, no bootloader or stock kernel runs
# under KVM (GRUB stops after "GRUB loading", extlinux with an emulation
# failure, the kernel at its switch to protected mode): guests run under TCG.
#
# Environment:
#   VAPOR_CACHE     cache root (default: ~/.cache/vapor)
#   DEBIAN_MIRROR   mirror for debootstrap (default: http://deb.debian.org/debian);
#                   not part of the recipe
#   GUEST_COMPRESS  1 (default) writes a compressed qcow2, 0 a plain one
set -euo pipefail

SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE=${VAPOR_CACHE:-$HOME/.cache/vapor}
DISK_MIB=2048
PART_START=2048   # sectors of 512 bytes: the partition starts at 1 MiB
# What the guest runs on top of debootstrap's minimal base: the kernel and its
# initramfs tools, systemd as init, cloud-init (with growpart for a disk made
# bigger than the image), SSH, the guest agent, the network stack of Debian's
# bookworm cloud images (netplan rendering for systemd-networkd, with
# systemd-resolved for the DNS servers DHCP gives), and GRUB's BIOS modules.
PACKAGES=(
  systemd-sysv udev dbus kmod
  linux-image-amd64 initramfs-tools zstd
  cloud-init cloud-guest-utils fdisk sudo
  openssh-server qemu-guest-agent
  netplan.io systemd-resolved iproute2
  grub-pc-bin
)
# Modules the initramfs carries (MODULES=list keeps it small, so it loads fast):
# the disks and NICs of QEMU/KVM guests and the root filesystem.
INITRAMFS_MODULES=(virtio_pci virtio_blk virtio_scsi virtio_net sd_mod sr_mod ahci nvme ext4 crc32c_generic)
# GRUB modules built into its core image: enough to read /boot/grub/grub.cfg
# and boot Linux from the first partition without loading anything else.
GRUB_MODULES=(biosdisk part_msdos ext2 normal configfile linux echo test serial terminal)

log() { printf '[guest-image %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

[[ $(id -u) -eq 0 ]] || { log "must run as root (debootstrap, chroot, mounts)"; exit 1; }
for tool in debootstrap mkfs.ext4 qemu-img python3 flock; do
  command -v "$tool" >/dev/null || { log "$tool is missing: run hack/setup.sh"; exit 1; }
done

COMPRESS=${GUEST_COMPRESS:-1}
recipe=$( (cat "$0"; echo "compress=$COMPRESS") | sha256sum | cut -c1-16)
dest="$CACHE/guest/$recipe"
image="$dest/debian-12.qcow2"
mkdir -p "$CACHE/guest"

# One build per recipe at a time: a second caller waits and takes the result.
exec 9>"$CACHE/guest/.lock-$recipe"
flock 9
if [[ -f $image && -f $image.sha256 ]]; then
  echo "$image"; exit 0
fi

start=$(date +%s)
work=$(mktemp -d "$CACHE/guest/.build-XXXXXX")
root="$work/root"
unmount_all() {
  local m
  for m in dev/pts dev proc sys run; do
    if mountpoint -q "$root/$m" 2>/dev/null; then umount "$root/$m" 2>/dev/null || umount -l "$root/$m"; fi
  done
}
cleanup() {
  local rc=$?
  unmount_all
  # Only ever inside the build folder: nothing is deleted while a mount is left in it.
  if ! grep -q " $work/" /proc/mounts; then rm -rf "$work"; fi
  [[ $rc -eq 0 ]] || log "failed (exit $rc); nothing was cached"
}
trap cleanup EXIT

log "recipe $recipe: building in $work"
log "debootstrap $SUITE (minbase) from $MIRROR"
debootstrap --variant=minbase "$SUITE" "$root" "$MIRROR" >"$work/debootstrap.log" 2>&1 || {
  tail -20 "$work/debootstrap.log" "$root/debootstrap/debootstrap.log" >&2 2>/dev/null; exit 1; }

mount -t proc proc "$root/proc"
mount -t sysfs sys "$root/sys"
mount --bind /dev "$root/dev"
mount --bind /dev/pts "$root/dev/pts"
mount -t tmpfs tmpfs "$root/run"
in_root() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive "$@"; }
apt_install() {
  in_root apt-get install -y -q --no-install-recommends "$@" >>"$work/apt.log" 2>&1 || {
    tail -30 "$work/apt.log" >&2; exit 1; }
}

uuid=$(cat /proc/sys/kernel/random/uuid)
echo "UUID=$uuid / ext4 rw,discard,errors=remount-ro 0 1" >"$root/etc/fstab"
echo debian >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
echo "deb $MIRROR $SUITE main" >"$root/etc/apt/sources.list"
# No documentation, man pages or translations (future installs in the guest too).
printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
  'path-exclude /usr/share/man/*' 'path-exclude /usr/share/info/*' \
  'path-exclude /usr/share/locale/*' 'path-include /usr/share/locale/locale.alias' \
  >"$root/etc/dpkg/dpkg.cfg.d/01-nodoc"
# No service starts inside the build's chroot.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod +x "$root/usr/sbin/policy-rc.d"

log "installing ${#PACKAGES[@]} packages and their dependencies"
in_root apt-get update -q >>"$work/apt.log" 2>&1 || { tail -30 "$work/apt.log" >&2; exit 1; }
# A small initramfs (loads fast): only the modules a QEMU guest's disks and
# root need; set before the kernel comes, so that it is built once.
apt_install initramfs-tools zstd
echo MODULES=list >"$root/etc/initramfs-tools/conf.d/vapor"
printf '%s\n' "${INITRAMFS_MODULES[@]}" >>"$root/etc/initramfs-tools/modules"
# One call: every download happens before systemd-resolved turns
# /etc/resolv.conf into a link that means nothing inside the chroot.
apt_install "${PACKAGES[@]}"
log "packages installed"

log "configuring the guest"
# cloud-init: only the NoCloud seed is looked for (no probing of cloud
# metadata services); network config rendered through netplan.
# Less first-boot work (guests here run under TCG, where every second shows):
# ed25519 and ECDSA host keys only (an RSA key takes seconds to make), the
# C.UTF-8 locale that needs no generating, no GRUB debconf settings.
printf '%s\n' 'datasource_list: [NoCloud, None]' 'system_info:' '  network:' '    renderers: [netplan]' \
  'ssh_genkeytypes: [ed25519, ecdsa]' 'locale: C.UTF-8' 'grub_dpkg:' '  enabled: false' \
  >"$root/etc/cloud/cloud.cfg.d/90-vapor.cfg"
echo LANG=C.UTF-8 >"$root/etc/default/locale"
# cloud-init always runs and finds its seed itself: its generator (a long
# shell script) does not probe every datasource at each boot.
echo 'policy: enabled' >"$root/etc/cloud/ds-identify.cfg"
# No drivers for what a VM does not have or need (udev would load them at
# boot): floppy, PC speaker, wireless.
printf 'blacklist %s\n' floppy pcspkr cfg80211 >"$root/etc/modprobe.d/vapor-vm.conf"
in_root systemctl mask systemd-binfmt.service >/dev/null 2>&1
grep -q 'name: debian' "$root/etc/cloud/cloud.cfg" || { log "cloud.cfg's default user is not debian"; exit 1; }
# networkd in the first boot transaction: cloud-init writes netplan's config
# after the generators ran.
in_root systemctl enable systemd-networkd.service systemd-resolved.service >/dev/null 2>&1
# Waiting for "online" holds cloud-init's network stage until DHCP answers,
# which it must (SSH keys come after); never for more than 20 s.
mkdir -p "$root/etc/systemd/system/systemd-networkd-wait-online.service.d"
printf '%s\n' '[Service]' 'ExecStart=' 'ExecStart=/lib/systemd/systemd-networkd-wait-online --any --timeout=20' \
  >"$root/etc/systemd/system/systemd-networkd-wait-online.service.d/vapor.conf"
# Each guest makes its own machine id (networkd's DHCP client id derives from
# it) and SSH host keys (cloud-init makes them).
rm -f "$root"/etc/ssh/ssh_host_* "$root/var/lib/dbus/machine-id"
: >"$root/etc/machine-id"

log "making GRUB's boot image"
# The kernel's package keeps /vmlinuz and /initrd.img pointing at the newest
# kernel, so the menu needs no rewriting after a kernel update in the guest.
# mitigations=off: a test guest, and under TCG the page-table isolation
# against Meltdown costs a TLB flush at every system call.
mkdir -p "$root/boot/grub"
printf '%s\n' \
  'serial --unit=0 --speed=115200' 'terminal_input serial console' 'terminal_output serial console' \
  'set timeout=0' \
  "linux /vmlinuz root=UUID=$uuid ro console=tty0 console=ttyS0,115200n8 quiet mitigations=off" \
  'initrd /initrd.img' 'boot' >"$root/boot/grub/grub.cfg"
in_root grub-mkimage -O i386-pc -o /boot/grub/core.img -p '(hd0,msdos1)/boot/grub' "${GRUB_MODULES[@]}"
mv "$root/boot/grub/core.img" "$work/core.img"
cp "$root/usr/lib/grub/i386-pc/boot.img" "$work/boot.img"
[[ $(stat -c %s "$work/core.img") -lt $(( (PART_START - 1) * 512 )) ]] || { log "GRUB's core image is too big"; exit 1; }

log "trimming the guest (apt lists and caches, docs, man pages, locales)"
in_root apt-get clean
rm -f "$root/usr/sbin/policy-rc.d"
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/*.log "$root"/var/log/apt/* \
  "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/tmp/* "$root"/var/tmp/* "$root/debootstrap"
find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
rm -f "$root/etc/resolv.conf"
ln -s ../run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"
unmount_all

log "writing the disk"
raw="$work/disk.raw"
truncate -s "${DISK_MIB}M" "$raw"
# One bootable Linux partition from 1 MiB to the end in an MBR partition
# table, written directly (no fdisk needed on the host).
python3 -c '
import os, struct, sys
path, start = sys.argv[1], int(sys.argv[2])
sectors = os.path.getsize(path) // 512 - start
# active, CHS fields unused (LBA only), type 0x83 Linux, first sector, count
entry = struct.pack("<B3sB3sII", 0x80, b"\xfe\xff\xff", 0x83, b"\xfe\xff\xff", start, sectors)
with open(path, "r+b") as disk:
    disk.seek(446)
    disk.write(entry + bytes(48) + b"\x55\xaa")
' "$raw" "$PART_START"
# The filesystem, filled from the tree, at the partition's offset.
mkfs.ext4 -q -F -L root -U "$uuid" -O ^metadata_csum_seed -E offset=$((PART_START * 512)) \
  -d "$root" "$raw" "$(( DISK_MIB * 1024 - PART_START / 2 ))k"
# GRUB: its boot code in the MBR (before the partition table), its core image
# from sector 1 (where the boot code looks for it by default).
dd if="$work/boot.img" of="$raw" bs=440 count=1 conv=notrunc status=none
dd if="$work/core.img" of="$raw" bs=512 seek=1 conv=notrunc status=none

log "converting to qcow2"
opts=()
[[ $COMPRESS == 1 ]] && opts=(-c)
qemu-img convert -O qcow2 "${opts[@]}" "$raw" "$work/debian-12.qcow2"
rm -f "$raw"
(cd "$work" && sha256sum debian-12.qcow2 >debian-12.qcow2.sha256)

# Into place: the folder appears whole or not at all.
rm -rf "$dest"
mkdir "$work/out"
mv "$work/debian-12.qcow2" "$work/debian-12.qcow2.sha256" "$work/out/"
mv "$work/out" "$dest"
log "built $(du -h "$image" | cut -f1) image in $(( $(date +%s) - start ))s: $image"
echo "$image"
