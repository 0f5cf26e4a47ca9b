#!/usr/bin/env bash
# Several cells of the study in one 600 s GPU call (tools/study/gpu_cell.sh runs each): the cells
# go in order, each with the time the call has left, so that no call ends with unused minutes.
# The cell the deadline reaches is stopped (training at a checkpoint, the eval after its task) and
# the next call, given the same list, resumes it; finished cells are skipped in seconds. The 32K
# speed steps run last, for the scored cells, in whatever time remains.
#
#   usage: tools/study/gpu_queue.sh OUT CELL...     e.g. "$OUT" base sliding-w512-s0
#   every cell is packed into OUT/CELL.tar.gz whenever it ran in this call
set -euo pipefail
OUT=$1
shift
export END=${END:-$(($(date +%s) + 585))}
left() { echo $((END - $(date +%s))); }
for cell in "$@"; do
  # Below ~90 s a cell would spend its time loading and stopping.
  (($(left) > 90)) || { echo "queue: $(left) s left; $cell and later cells wait for the next call"; break; }
  SPEED=0 bash tools/study/gpu_cell.sh "$cell" "$OUT"
done
for cell in "$@"; do
  dir=/tmp/stage/study-out/cells/$cell
  [[ -e $dir/eval.json && ! -e $dir/speed.jsonl ]] || continue
  (($(left) > 90)) || break
  SPEED=1 bash tools/study/gpu_cell.sh "$cell" "$OUT"
done
echo "queue: done with $(left) s left"
