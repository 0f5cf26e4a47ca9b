#!/usr/bin/env bash
# Stage files on the GPU machine from what a device call carried in .device/, across consecutive
# calls (the machine keeps /tmp while it stays warm, 30 s after a call; a call carries 64 MiB):
#
#   NAME.xz.partNN     appended, in order, to /tmp/stage/NAME.xz; once NAME.xz.sha256 (carried with
#                      any part) matches, unpacked to /tmp/stage/NAME
#   NAME.tar.xz        unpacked into /tmp/stage/NAME/
#   NAME.xz            unpacked to /tmp/stage/NAME (made executable: the swiattn binary)
#
# Here, before the calls (e.g. the SmolLM2 GGUF, 90 MB packed, over two calls):
#   xz -T2 -6 -c model.gguf > /tmp/m.xz; sha256sum < /tmp/m.xz | cut -d' ' -f1 > .device/smollm2.gguf.xz.sha256
#   split -b 30000000 -d -a 2 /tmp/m.xz /tmp/smollm2.gguf.xz.part   # then carry some parts per call
# There, at the start of every call: bash tools/gpu_stage.sh (idempotent: a part is appended once).
set -euo pipefail
S=/tmp/stage
mkdir -p "$S"
unxz() { python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" "$1" "$2"; }
shopt -s nullglob
for part in .device/*.xz.part[0-9][0-9]; do
  name=$(basename "${part%.part*}")
  if ! grep -qx "$(basename "$part")" "$S/$name.parts" 2>/dev/null; then
    cat "$part" >>"$S/$name"
    basename "$part" >>"$S/$name.parts"
  fi
done
for sum in .device/*.xz.sha256; do cp "$sum" "$S/"; done
for sum in "$S"/*.xz.sha256; do
  packed=${sum%.sha256}
  [[ -f $packed && ! -f ${packed%.xz} ]] || continue
  if [[ $(sha256sum <"$packed" | cut -d' ' -f1) == $(cat "$sum") ]]; then
    unxz "$packed" "${packed%.xz}"
    echo "staged ${packed%.xz} ($(stat -c %s "${packed%.xz}") bytes, parts: $(tr '\n' ' ' <"$packed.parts"))"
  else
    echo "waiting for parts of $(basename "$packed"): have $(tr '\n' ' ' <"$packed.parts")"
  fi
done
for tarball in .device/*.tar.xz; do
  dir=$S/$(basename "$tarball" .tar.xz)
  mkdir -p "$dir"
  python3 -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])" "$tarball" "$dir"
  echo "staged $dir/"
done
for packed in .device/*.xz; do
  [[ $packed == *.tar.xz ]] && continue
  unxz "$packed" "$S/$(basename "$packed" .xz)"
  chmod +x "$S/$(basename "$packed" .xz)"
  echo "staged $S/$(basename "$packed" .xz)"
done
