#!/bin/busybox sh
# PID 1 of the kernel matrix's VMs: tests/src/vm.rs packs it as /init of an initramfs with
# busybox, the static observer, static tests/progs/threads_exit and tcp_hold, and
# tests/vm/scenarios.sh.
# It mounts what a node has (procfs, sysfs, devtmpfs, tmpfs /tmp and /run, tracefs, bpffs,
# cgroup2 alone at /sys/fs/cgroup), brings loopback up for the daemon's HTTP server, runs the
# scenarios, copies their marker lines to the second serial port (ttyS1: the kernel writes
# only to the console, ttyS0, so no kernel message can land inside a marker line) and powers
# off.

/bin/busybox mount -t proc proc /proc
# Applet links (busybox finds itself through /proc/self/exe).
/bin/busybox --install -s /bin
export PATH=/bin

mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t tracefs tracefs /sys/kernel/tracing
mount -t bpf bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup
ip link set lo up
hostname observer-vm
# The data port: no echo, no \n -> \r\n.
stty -F /dev/ttyS1 raw -echo

mkdir -p /tmp/work
OBS_APPLETS=/bin OBS_BIN=/bin/observer OBS_THREADS_EXIT=/bin/threads_exit \
	OBS_TCP_HOLD=/bin/tcp_hold OBS_V2=/sys/fs/cgroup OBS_WORK=/tmp/work \
	OBS_TAG="vm-$(uname -r)" OBS_LISTEN=127.0.0.1:9464 OBS_NODE=observer-vm \
	OBS_OUT=/tmp/markers /bin/sh /scenarios.sh
echo "init: scenarios.sh exited with $?"
# cat's close of ttyS1, its last, waits until the port has sent everything.
cat /tmp/markers >/dev/ttyS1
poweroff -f
