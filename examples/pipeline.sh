#!/usr/bin/env bash
# Translate every photo under a folder tree, in a shell pipeline, and keep a list of the results.
#   examples/pipeline.sh SHOTS_DIR OUT_DIR [DOMAIN] [MODEL]
# gantrans reads image paths from stdin (one a line) and prints each written path on stdout;
# progress and errors go to stderr, so the pipeline only carries paths.
set -euo pipefail
shots=${1:?usage: pipeline.sh SHOTS_DIR OUT_DIR [DOMAIN] [MODEL]}
out=${2:?usage: pipeline.sh SHOTS_DIR OUT_DIR [DOMAIN] [MODEL]}
domain=${3:-vintage}
model=${4:-runs/demo}

find "$shots" -type f \( -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.png' \) \
  | gantrans translate --to "$domain" --model "$model" --out "$out" \
  | tee "$out.list"

# Bytes in, bytes out: one image through stdin and stdout, no files named.
first=$(find "$shots" -type f -iname '*.png' | head -n 1)
gantrans translate - --to "$domain" --model "$model" < "$first" > "$out/stdin-example.$domain.png"
echo "$out/stdin-example.$domain.png"
