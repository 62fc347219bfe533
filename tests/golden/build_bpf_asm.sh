#!/usr/bin/env bash
# Build the kernel's bpf_asm (tools/bpf) from Debian's linux-source tarball, for the golden
# and differential tests (tests/test_golden.py, tests/test_golden_fuzz.py).
#
#   apt-get install bison flex linux-source-6.12     # .ci/run does this as root
#   tests/golden/build_bpf_asm.sh [OUT]              # default /opt/bpf_asm/bpf_asm
#
# Only bpf_exp.l, bpf_exp.y and bpf_asm.c are taken from the tarball; the uapi headers are
# the system's (linux-libc-dev). OUT is replaced only by a complete build.
set -euo pipefail
out=${1:-/opt/bpf_asm/bpf_asm}
tarball=$(ls /usr/src/linux-source-*.tar.xz 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$tarball" ]; then
  echo "build_bpf_asm: no /usr/src/linux-source-*.tar.xz (apt-get install linux-source-6.12)" >&2
  exit 1
fi
for tool in bison flex cc; do
  command -v "$tool" >/dev/null || { echo "build_bpf_asm: $tool is not installed" >&2; exit 1; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
top=$(basename "$tarball" .tar.xz)
tar -xJf "$tarball" -C "$work" --wildcards "$top/tools/bpf/bpf_exp.[ly]" "$top/tools/bpf/bpf_asm.c"
cd "$work/$top/tools/bpf"
bison -o bpf_exp.yacc.c -d bpf_exp.y
flex -o bpf_exp.lex.c bpf_exp.l
mkdir -p "$(dirname "$out")"
cc -O2 -Wall -I. -o "$out.tmp" bpf_asm.c bpf_exp.yacc.c bpf_exp.lex.c
mv -f "$out.tmp" "$out"
echo "bpf_asm built from $tarball ($(sha256sum bpf_exp.l bpf_exp.y bpf_asm.c | awk '{print $1}' | sha256sum | cut -c1-16))" \
  > "$(dirname "$out")/BUILT_FROM"
echo "build_bpf_asm: $out ($top)"
