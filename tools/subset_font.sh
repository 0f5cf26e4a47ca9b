#!/usr/bin/env bash
# How crates/swiattn-router/assets/DejaVuSans-ascii.ttf (the font of the PNG plots) was made.
set -euo pipefail
tmp=$(mktemp -d)
cd "$tmp"
apt-get download fonts-dejavu-core
dpkg -x fonts-dejavu-core_*.deb x
python3 -m pip install -q fonttools
pyftsubset x/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf \
  --unicodes="U+0020-007E,U+00B7,U+2013,U+2014,U+2026,U+00D7" --layout-features='' --no-hinting \
  --output-file=DejaVuSans-ascii.ttf
echo "$tmp/DejaVuSans-ascii.ttf"
