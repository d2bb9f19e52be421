#!/usr/bin/env bash
# Build the Vagrant box for vagrant/Vagrantfile's libvirt provider from Debian
# packages only (no box download) and add it to Vagrant.
#
#   scripts/build-box.sh [--name NAME] [--out DIR] [--size GIB] [--mirror URL]
#                        [--security URL] [--force] [--no-add]
#
#   --name      box name for `vagrant box add` (default metricsstream/debian12;
#               use it with MS_BOX=NAME)
#   --out       work and output directory (default /var/tmp/metricsstream-box)
#   --size      virtual disk size in GiB (default 8; the image is sparse)
#   --mirror    Debian mirror (default: the first Debian URI this machine's apt
#               uses, else http://deb.debian.org/debian); --security likewise
#   --force     rebuild even if the inputs did not change
#   --no-add    build DIR/metricsstream-debian12.box only
#
# What is in it: Debian 12 (bookworm, amd64) from mmdebstrap, linux-image-amd64
# (its modules include vfio-pci and uio_pci_generic), systemd, openssh-server,
# sudo, rsync (Vagrant's synced folder), the DPDK 22.11 runtime and tools
# (dpdk, dpdk-testpmd, the virtio and pcap PMDs) and the few tools the ops
# scripts call (pciutils, kmod, iproute2, ethtool, curl). User `vagrant`
# (password `vagrant`, passwordless sudo) with Vagrant's insecure public key,
# which Vagrant replaces at the first `vagrant up`.
# Disk: an MBR disk image with syslinux's MBR, partition 1 FAT (syslinux,
# the kernel and initrd: no loop device or mount is needed to make it:
# mkfs.fat + mtools + syslinux's mtools installer), partition 2 the ext4 root
# made by `mke2fs -d` from the mmdebstrap tree; converted to qcow2.
# The kernel boots with net.ifnames=0 so the first NIC (Vagrant's management
# NIC) is eth0 and is the only one configured (DHCP, systemd-networkd); the
# data NICs stay unconfigured for DPDK. Serial console on ttyS0, quiet: under
# TCG every console character is an emulated UART write. Debian's dpdk.service
# (binds from /etc/dpdk/interfaces, empty here) and e2scrub are masked: under
# TCG they held the boot for minutes, and provision.sh does the binding.
#
# Idempotent: a stamp of the inputs (this script, the package list, the
# mirror, the size) is kept beside the image; an unchanged build is skipped,
# and the box is added only when Vagrant does not already have this build.
# Heavy steps run under `nice -n 19`. Needs root and the Debian packages
# mmdebstrap, e2fsprogs, dosfstools, mtools, syslinux, syslinux-common,
# fdisk, qemu-utils, vagrant (scripts/setup.sh --vm installs them).
set -euo pipefail

NAME=metricsstream/debian12
OUT=/var/tmp/metricsstream-box
SIZE_GIB=8
MIRROR=""
SECURITY=""
FORCE=0
ADD=1

usage() { sed -n '2,16s/^# \{0,1\}//p' "$0"; }
log() { printf '==> build-box: %s\n' "$*" >&2; }
die() { printf 'build-box: error: %s\n' "$*" >&2; exit 1; }

while [[ $# -gt 0 ]]; do
    case $1 in
        --name) NAME=${2:?--name needs a box name}; shift 2 ;;
        --out) OUT=${2:?--out needs a directory}; shift 2 ;;
        --size) SIZE_GIB=${2:?--size needs GiB}; shift 2 ;;
        --mirror) MIRROR=${2:?--mirror needs a URL}; shift 2 ;;
        --security) SECURITY=${2:?--security needs a URL}; shift 2 ;;
        --force) FORCE=1; shift ;;
        --no-add) ADD=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
[[ $SIZE_GIB =~ ^[0-9]+$ && $SIZE_GIB -ge 3 ]] || die "--size must be a whole number of GiB >= 3"
[[ $EUID -eq 0 ]] || die "run as root (mmdebstrap builds the tree as root; no loop device is used)"

# apt_uri SUITE: the URI this machine's apt uses for a Debian suite.
apt_uri() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [[ -r $f ]] || continue
        case $f in
            *.sources) awk -v s="$1" '
                /^URIs:/ { u = $2 } /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == s) { print u; exit } }' "$f" ;;
            *) awk -v s="$1" '$1 == "deb" && $3 == s { print $2; exit }' "$f" ;;
        esac
    done | head -n1
}
[[ -n $MIRROR ]] || MIRROR=$(apt_uri bookworm)
[[ -n $MIRROR ]] || MIRROR=http://deb.debian.org/debian
[[ -n $SECURITY ]] || SECURITY=$(apt_uri bookworm-security)
[[ -n $SECURITY ]] || SECURITY=http://deb.debian.org/debian-security

for tool in mmdebstrap mke2fs mkfs.fat mcopy syslinux sfdisk qemu-img; do
    command -v "$tool" >/dev/null || die "$tool missing: run scripts/setup.sh --vm (Debian packages)"
done
MBR=/usr/lib/syslinux/mbr/mbr.bin
[[ -r $MBR ]] || die "$MBR missing (Debian package syslinux-common)"
KEY=""
for k in /usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub \
         /opt/vagrant/embedded/gems/gems/vagrant-*/keys/vagrant.pub; do
    [[ -r $k ]] && KEY=$k
done
[[ -n $KEY ]] || die "Vagrant's insecure public key (keys/vagrant.pub of the vagrant package) not found"

PACKAGES=(
    # boot and init
    linux-image-amd64 initramfs-tools systemd-sysv udev dbus kmod e2fsprogs
    # Vagrant: ssh, sudo, rsync synced folder, hostname/network
    openssh-server sudo rsync iproute2 netbase
    # DPDK 22.11: tools (dpdk-devbind.py, dpdk-hugepages.py; dpdk-testpmd is in
    # dpdk-dev), the PMDs the lab uses, and the libraries metricsstream links
    dpdk dpdk-dev librte-net-virtio23 librte-net-pcap23 librte-net-af-packet23
    librte-mempool-ring23 python3 pciutils hwdata
    # the walk-through's kernel-side tools
    curl ethtool procps less
)
pkgs=$(printf '%s\n' "${PACKAGES[@]}" | paste -sd, -)

mkdir -p "$OUT"
STAMP=$OUT/inputs.sha256
IMAGE=$OUT/box.img
BOX=$OUT/metricsstream-debian12.box
stamp=$( { sha256sum "$0" | cut -d' ' -f1; echo "$pkgs $MIRROR $SECURITY $SIZE_GIB"; sha256sum "$KEY" | cut -d' ' -f1; } | sha256sum | cut -d' ' -f1)

if [[ $FORCE -eq 0 && -s $BOX && -r $STAMP && $(<"$STAMP") == "$stamp" ]]; then
    log "$BOX is up to date (inputs unchanged; --force rebuilds)"
else
    rm -f "$BOX" "$STAMP"
    ROOT=$OUT/rootfs
    rm -rf "$ROOT"
    log "mmdebstrap bookworm from $MIRROR (nice 19; a few minutes)"
    # Guest configuration written into the tree before it is packed.
    # shellcheck disable=SC2016  # expanded by the hook's shell, $1 = the tree
    nice -n 19 mmdebstrap --mode=root --variant=minbase --arch=amd64 \
        --include="$pkgs" \
        --aptopt='Acquire::Retries "3"' \
        --customize-hook='printf "LABEL=ms-root / ext4 errors=remount-ro 0 1\n" >"$1/etc/fstab"' \
        --customize-hook='printf "[Match]\nName=eth0\n\n[Network]\nDHCP=ipv4\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n" >"$1/etc/systemd/network/10-management.network"' \
        --customize-hook='chroot "$1" systemctl enable systemd-networkd.service ssh.service' \
        --customize-hook='chroot "$1" useradd -m -s /bin/bash -G sudo vagrant' \
        --customize-hook='echo vagrant:vagrant | chroot "$1" chpasswd' \
        --customize-hook='echo "vagrant ALL=(ALL) NOPASSWD: ALL" >"$1/etc/sudoers.d/vagrant"; chmod 0440 "$1/etc/sudoers.d/vagrant"' \
        --customize-hook="install -d -m 0700 \"\$1/home/vagrant/.ssh\"; install -m 0600 '$KEY' \"\$1/home/vagrant/.ssh/authorized_keys\"" \
        --customize-hook='chroot "$1" chown -R vagrant:vagrant /home/vagrant/.ssh' \
        --customize-hook='printf "UseDNS no\n" >"$1/etc/ssh/sshd_config.d/vagrant.conf"' \
        --customize-hook='printf "vfio-pci\nuio_pci_generic\n" >"$1/etc/modules-load.d/metricsstream-dpdk.conf"' \
        --customize-hook='chroot "$1" systemctl mask dpdk.service e2scrub_reap.service e2scrub_all.timer' \
        --customize-hook='rm -f "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*_Packages*' \
        bookworm "$ROOT" \
        "deb $MIRROR bookworm main" "deb $MIRROR bookworm-updates main" \
        "deb $SECURITY bookworm-security main"

    # Written after mmdebstrap, which replaces hostname and resolv.conf with the
    # build host's while it runs. The guest needs no DNS (no apt in the lab).
    echo metricsstream-box >"$ROOT/etc/hostname"
    printf '127.0.0.1 localhost\n127.0.1.1 metricsstream-box\n::1 localhost ip6-localhost ip6-loopback\n' >"$ROOT/etc/hosts"
    rm -f "$ROOT/etc/resolv.conf"; : >"$ROOT/etc/resolv.conf"

    kernel=$(find "$ROOT/boot" -maxdepth 1 -name 'vmlinuz-*' | sort -V | tail -n1)
    kver=${kernel##*/vmlinuz-}
    initrd=$ROOT/boot/initrd.img-$kver
    [[ -n $kver && -r $initrd ]] || die "no kernel/initrd in $ROOT/boot"
    for m in vfio-pci uio_pci_generic virtio_net virtio_blk; do
        find "$ROOT/lib/modules/$kver" -name "${m//[-_]/[-_]}.ko*" | grep -q . \
            || die "kernel $kver has no module $m"
    done
    log "kernel $kver (modules vfio-pci, uio_pci_generic present)"

    # Layout: 1 MiB gap (MBR), partition 1 FAT 128 MiB, partition 2 ext4 to the end.
    boot_start=2048
    boot_sectors=$((128 * 2048))
    root_start=$((boot_start + boot_sectors))
    total_sectors=$((SIZE_GIB * 1024 * 2048))
    root_sectors=$((total_sectors - root_start))

    log "FAT boot partition: syslinux, kernel, initrd"
    rm -f "$OUT/boot.fat"
    mkfs.fat -C -n MSBOOT "$OUT/boot.fat" $((boot_sectors / 2)) >/dev/null
    syslinux --install "$OUT/boot.fat"
    cat >"$OUT/syslinux.cfg" <<EOF
DEFAULT debian
TIMEOUT 0
PROMPT 0
SERIAL 0 115200
LABEL debian
    KERNEL /vmlinuz
    INITRD /initrd.img
    APPEND root=LABEL=ms-root ro net.ifnames=0 biosdevname=0 console=tty0 console=ttyS0,115200n8 quiet loglevel=4 systemd.show_status=error
EOF
    MTOOLS_SKIP_CHECK=1 mcopy -o -i "$OUT/boot.fat" "$kernel" ::/vmlinuz
    MTOOLS_SKIP_CHECK=1 mcopy -o -i "$OUT/boot.fat" "$initrd" ::/initrd.img
    MTOOLS_SKIP_CHECK=1 mcopy -o -i "$OUT/boot.fat" "$OUT/syslinux.cfg" ::/syslinux.cfg

    log "ext4 root partition from the tree (mke2fs -d, no mount)"
    rm -f "$OUT/root.ext4"
    nice -n 19 mke2fs -q -F -t ext4 -L ms-root -d "$ROOT" "$OUT/root.ext4" $((root_sectors / 2))k

    log "disk image: MBR + partitions"
    rm -f "$IMAGE"
    truncate -s $((total_sectors * 512)) "$IMAGE"
    sfdisk -q "$IMAGE" <<EOF
label: dos
start=$boot_start, size=$boot_sectors, type=c, bootable
start=$root_start, size=$root_sectors, type=83
EOF
    dd if="$MBR" of="$IMAGE" bs=440 count=1 conv=notrunc status=none
    dd if="$OUT/boot.fat" of="$IMAGE" bs=1M seek=$((boot_start / 2048)) conv=notrunc,sparse status=none
    dd if="$OUT/root.ext4" of="$IMAGE" bs=1M seek=$((root_start / 2048)) conv=notrunc,sparse status=none
    rm -f "$OUT/boot.fat" "$OUT/root.ext4"

    log "qcow2 and box"
    rm -f "$OUT/box.qcow2"
    nice -n 19 qemu-img convert -O qcow2 "$IMAGE" "$OUT/box.qcow2"
    rm -f "$IMAGE"
    pkgdir=$OUT/pkg
    rm -rf "$pkgdir"; mkdir -p "$pkgdir"
    mv "$OUT/box.qcow2" "$pkgdir/box.img"
    printf '{"provider": "libvirt", "format": "qcow2", "virtual_size": %d}\n' "$SIZE_GIB" >"$pkgdir/metadata.json"
    cat >"$pkgdir/Vagrantfile" <<'EOF'
# metricsstream Debian 12 box (scripts/build-box.sh): libvirt, virtio disk.
Vagrant.configure("2") do |config|
  config.vm.provider :libvirt do |lv|
    lv.disk_bus = "virtio"
  end
end
EOF
    tar -C "$pkgdir" -czf "$BOX.tmp" metadata.json Vagrantfile box.img
    mv "$BOX.tmp" "$BOX"
    rm -rf "$pkgdir" "$ROOT"
    printf '%s\n' "$stamp" >"$STAMP"
    log "built $BOX ($(du -h "$BOX" | cut -f1))"
fi

if [[ $ADD -eq 1 ]]; then
    command -v vagrant >/dev/null || die "vagrant missing (Debian package vagrant)"
    added=$OUT/added.sha256
    if [[ -r $added && $(<"$added") == "$stamp" ]] && vagrant box list 2>/dev/null | grep -q "^$NAME .*libvirt"; then
        log "box $NAME (libvirt) already added from this build"
    else
        log "vagrant box add $NAME"
        vagrant box add --force --name "$NAME" "$BOX"
        printf '%s\n' "$stamp" >"$added"
    fi
fi
log "use it: MS_BOX=$NAME vagrant up --provider=libvirt (see docs/operations.md §1)"
