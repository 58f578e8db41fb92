#!/bin/sh
# Build the cvmlaunch example guest with the machine's gcc and binutils.
#
#   examples/guest/build.sh [OUTPUT]      (default: cvmlaunch/data/example-guest.elf)
#
# Reproducible: no timestamps, no build id, no paths in the output; the same gcc and binutils
# give the same bytes. The toolchain versions are written next to the output (.toolchain).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-"$here/../../cvmlaunch/data/example-guest.elf"}
CC=${CC:-gcc}
LD=${LD:-ld}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

CFLAGS="-m32 -march=i686 -O2 -std=gnu11 -Wall -Wextra -Werror -ffreestanding -nostdlib -fno-pic
 -fno-pie -fno-stack-protector -fno-asynchronous-unwind-tables -fno-unwind-tables -fno-ident
 -mgeneral-regs-only -fno-builtin -fno-tree-loop-distribute-patterns"

cd "$here"
for src in start.S main.c sha384.c; do
	# shellcheck disable=SC2086
	$CC $CFLAGS -c "$src" -o "$tmp/${src%.*}.o"
done
$LD -m elf_i386 -nostdlib --build-id=none -z noexecstack -T guest.ld -o "$tmp/guest.elf" \
	"$tmp/start.o" "$tmp/main.o" "$tmp/sha384.o"
strip --strip-all -R .comment "$tmp/guest.elf" -o "$tmp/guest.stripped"
mkdir -p "$(dirname "$out")"
cp "$tmp/guest.stripped" "$out"
{
	$CC --version | head -n 1
	$LD --version | head -n 1
} >"$out.toolchain"
