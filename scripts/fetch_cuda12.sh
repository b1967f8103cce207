#!/usr/bin/env bash
# Fetches a CUDA 12.4 compiler into ${FASA_FAST_CACHE:-~/.cache/fasa_fast}/cuda-12.4/ and prints
# that path (the CUDA_HOME to build with) as its last line of stdout; everything else goes to
# stderr. Idempotent: a second run checks the toolkit and prints the path.
#
# Why: torch 2.1.2+cu121 (the mainstream MMDetection stack) compiles CUDA extensions only with a
# CUDA 12 nvcc (torch refuses to compile across major versions), and PyPI's CUDA 12 wheels have
# no nvcc front end (cicc, cudafe++). Debian trixie's non-free nvidia-cuda-toolkit is CUDA 12.4
# and needs only glibc >= 2.34.
#
# How: apt-get with a private configuration (its own sources.list, lists and cache under a
# temporary directory; /etc/apt and the installed packages are left alone, no root needed)
# downloads the .deb files below, `dpkg-deb -x` unpacks them, and the parts nvcc needs are copied
# into the layout torch.utils.cpp_extension expects:
#   bin/      nvcc, cicc, cudafe++, ptxas, fatbinary, nvlink, crt/*.stub, cuobjdump, nvdisasm,
#             bin2c, nvprune, and an nvcc.profile relative to nvcc itself (Debian's points at
#             /usr/lib/nvidia-cuda-toolkit and leaves the headers to /usr/include)
#   include/  the CUDA headers, CUB, Thrust, libcu++
#   lib64/    libcudart.so*, libcudart_static.a, libcudadevrt.a
#   nvvm/libdevice/libdevice.10.bc
# The packages: nvidia-cuda-toolkit (the compiler; its profilers and sanitizer are not copied),
# nvidia-cuda-dev (only its headers and two small libraries are kept: Debian has no smaller package with cuda_runtime.h,
# and this one also carries every static library, ~0.9 GB of the download), libcudart12,
# libcub-dev, libthrust-dev, libcu++-dev. The .deb files are deleted once the toolkit is built.
set -euo pipefail

CACHE=${FASA_FAST_CACHE:-$HOME/.cache/fasa_fast}
DEST=$CACHE/cuda-12.4
MIRROR=${FASA_FAST_DEBIAN_MIRROR:-http://deb.debian.org/debian}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
PACKAGES=(nvidia-cuda-toolkit nvidia-cuda-dev libcudart12 libcub-dev libthrust-dev libcu++-dev)

log() { echo "[fetch_cuda12] $*" >&2; }

# A finished toolkit: its nvcc runs and says 12.x, and the marker written last is there.
if [[ -f $DEST/.fasa_fast-complete ]] && "$DEST/bin/nvcc" --version 2>/dev/null | grep -q 'release 12\.'; then
    log "CUDA 12 toolkit in place ($(tr '\n' ' ' <"$DEST/.fasa_fast-complete"))"
    echo "$DEST"
    exit 0
fi

for tool in apt-get dpkg-deb; do
    command -v "$tool" >/dev/null || {
        log "needs $tool (a Debian/Ubuntu host); found none on PATH"
        exit 1
    }
done
[[ -r $KEYRING ]] || {
    log "needs Debian's archive keyring $KEYRING (package debian-archive-keyring) to check the download"
    exit 1
}

mkdir -p "$CACHE"
WORK=$(mktemp -d "$CACHE/cuda-12.4.work.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK"/apt/{lists/partial,cache/archives/partial} "$WORK/debs" "$WORK/stage"
echo "deb [signed-by=$KEYRING] $MIRROR trixie main non-free" >"$WORK/apt/sources.list"
APT=(
    -o "Dir::Etc::SourceList=$WORK/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$WORK/apt/lists" -o "Dir::Cache=$WORK/apt/cache"
    -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null
    -o APT::Sandbox::User="$(id -un)" -o Debug::NoLocking=1
)

start=$SECONDS
log "reading trixie's package index ($MIRROR)"
apt-get "${APT[@]}" -qq update >&2
(cd "$WORK/debs" && apt-get "${APT[@]}" -q download "${PACKAGES[@]}" >&2)
mb=$(($(du -cb "$WORK"/debs/*.deb | tail -1 | cut -f1) / 1000000))
log "downloaded ${mb} MB in $((SECONDS - start)) s: $(cd "$WORK/debs" && echo *.deb)"

start=$SECONDS
for deb in "$WORK"/debs/*.deb; do
    case $(basename "$deb") in
        # the headers and the two small libraries nvcc's own link step adds (cudadevrt, the
        # static cudart); the rest of this package is the math libraries' static archives
        nvidia-cuda-dev_*)
            dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$WORK/stage" ./usr/include \
                ./usr/lib/x86_64-linux-gnu/libcudadevrt.a ./usr/lib/x86_64-linux-gnu/libcudart_static.a
            ;;
        *) dpkg-deb -x "$deb" "$WORK/stage" ;;
    esac
    rm -f "$deb"
done
log "unpacked in $((SECONDS - start)) s"

S=$WORK/stage
T=$WORK/toolkit
mkdir -p "$T"/{bin/crt,include,lib64,nvvm/libdevice}
# Debian's /usr/bin/nvcc is a wrapper script; the compiler driver lives next to cicc.
cp -a "$S"/usr/lib/nvidia-cuda-toolkit/bin/{nvcc,cicc} "$T/bin/"
cp -a "$S"/usr/lib/nvidia-cuda-toolkit/bin/crt/{link,prelink}.stub "$T/bin/crt/"
for b in cudafe++ ptxas fatbinary nvlink cuobjdump nvdisasm bin2c nvprune; do
    cp -a "$S/usr/bin/$b" "$T/bin/"
done
cp -a "$S"/usr/lib/nvidia-cuda-toolkit/libdevice/libdevice.10.bc "$T/nvvm/libdevice/"
cp -a "$S"/usr/include/. "$T/include/"
cp -a "$S"/usr/lib/x86_64-linux-gnu/{libcudart.so.12*,libcudadevrt.a,libcudart_static.a} "$T/lib64/"
ln -s libcudart.so.12 "$T/lib64/libcudart.so"
# nvcc reads nvcc.profile from its own directory; _HERE_ is that directory.
cat >"$T/bin/nvcc.profile" <<'EOF'
# Written by fasa_fast's scripts/fetch_cuda12.sh: every path relative to this directory.
TOP                = $(_HERE_)/..
NVVMIR_LIBRARY_DIR = $(TOP)/nvvm/libdevice
LD_LIBRARY_PATH   += $(TOP)/lib64:
PATH              += $(_HERE_):
INCLUDES          += "-I$(TOP)/include" $(_SPACE_)
LIBRARIES          =+ $(_SPACE_) "-L$(TOP)/lib64"
EOF

# The toolkit must compile sm_90 code on its own: nothing from /usr/lib/nvidia-cuda-toolkit or
# another CUDA installation in the commands nvcc runs.
cat >"$WORK/probe.cu" <<'EOF'
#include <cuda_runtime.h>
#include <cub/block/block_scan.cuh>
__global__ void probe(float *x) { x[threadIdx.x] = __expf(x[threadIdx.x]); }
int main() { return probe == nullptr; }
EOF
version=$("$T/bin/nvcc" --version | sed -n 's/.*release \([0-9.]*\),.*/\1/p')
[[ $version == 12.* ]] || {
    log "expected a CUDA 12 nvcc, got release '$version'"
    exit 1
}
dryrun=$("$T/bin/nvcc" -dryrun -arch=sm_90 -c "$WORK/probe.cu" -o "$WORK/probe.o" 2>&1)
if grep -E '/usr/lib/nvidia-cuda-toolkit|/usr/local/cuda|/etc/nvcc' <<<"$dryrun" >&2; then
    log "nvcc still reaches outside $T (lines above)"
    exit 1
fi
"$T/bin/nvcc" -arch=sm_90 -o "$WORK/probe" "$WORK/probe.cu" >&2
elves=$("$T/bin/cuobjdump" --list-elf "$WORK/probe")
grep -q sm_90 <<<"$elves" || {
    log "the probe program has no sm_90 code"
    exit 1
}

{
    echo "nvcc $version"
    for deb in "${PACKAGES[@]}"; do
        echo "$deb $(apt-cache "${APT[@]}" show --no-all-versions "$deb" | sed -n 's/^Version: //p')"
    done
} >"$T/.fasa_fast-complete"
rm -rf "$DEST"
mv "$T" "$DEST"
log "CUDA $version toolkit ($(du -sm "$DEST" | cut -f1) MB) in $DEST"
echo "$DEST"
