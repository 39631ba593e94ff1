#!/usr/bin/env bash
# Submit an array job and its merge-and-verify step (which waits for the whole array with afterok); print both ids.
#
#   slurm/submit_pipeline.sh generate PRESET=valuescope SUBREDDIT=askmen DIM=formality EXPECTED=1200
#   slurm/submit_pipeline.sh rephrase INPUT=posts.csv ARRAY=0-15
#   slurm/submit_pipeline.sh augment INPUT=jigsaw.csv LABEL_COL=is_bad TARGET=1 N=2000 -- --partition=gpu
#
# KIND is generate, rephrase or augment (slurm/<kind>_array.sbatch). VAR=value pairs are the template's variables
# (see its header) and are passed to both jobs; besides them:
#   ARRAY     the array range, e.g. 0-15 or 0-15%4 (default: the template's #SBATCH --array)
#   MERGE     the merged file (default: derived from the variables as the scripts name their outputs)
#   EXPECTED  passed to the merge step: fail unless it merges exactly this many records
#   LOG_DIR   where the jobs' logs go (created here, since SLURM does not create it)            default logs
# Everything after -- goes to both sbatch calls (partition, account, qos, ...). Both jobs are submitted from the
# repository root (wherever this is called from), so relative paths are relative to it.
# Prints "array <id>" and "merge <id>".
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
    sed -n '2,17p' slurm/submit_pipeline.sh | sed 's/^# \{0,1\}//' >&2
    exit 2
}
[ $# -ge 1 ] || usage
KIND=$1
shift
case "$KIND" in
    generate | rephrase | augment) ;;
    -h | --help) usage ;;
    *) echo "error: unknown KIND $KIND (generate, rephrase or augment)" >&2; exit 2 ;;
esac

SBATCH=${SBATCH:-sbatch}
exports=ALL
sbatch_opts=()
while [ $# -gt 0 ]; do
    case "$1" in
        --) shift; sbatch_opts+=("$@"); break ;;
        *=*)
            name=${1%%=*}
            value=${1#*=}
            [[ "$name" =~ ^[A-Z_][A-Z0-9_]*$ ]] || { echo "error: bad variable name in $1" >&2; exit 2; }
            [[ "$value" != *,* ]] || { echo "error: $name: sbatch --export cannot carry a comma; export $name in your shell instead" >&2; exit 2; }
            printf -v "$name" '%s' "$value"
            export "${name?}"
            exports+=",$name"
            ;;
        *) echo "error: expected VAR=value or --, got $1" >&2; exit 2 ;;
    esac
    shift
done

case "$KIND" in
    generate)
        dim=${DIM:-formality}
        case "$dim" in
            *.yaml | *.yml) [ -n "${MERGE:-}" ] || { echo "error: DIM is a YAML file: give MERGE=<out>/<subreddit>_<name>.jsonl" >&2; exit 2; } ;;
        esac
        default_merge=${OUT:-output}/${SUBREDDIT:-askmen}_${dim}.jsonl
        ;;
    rephrase)
        [ -n "${INPUT:-}" ] || { echo "error: rephrase needs INPUT=posts file" >&2; exit 2; }
        name=$(basename "$INPUT")
        default_merge=${OUT:-output/rephrase_${name%%.*}}/rephrased.jsonl
        ;;
    augment)
        [ -n "${INPUT:-}" ] && [ -n "${TARGET:-}" ] || { echo "error: augment needs INPUT=file and TARGET=label" >&2; exit 2; }
        label=$(printf '%s' "$TARGET" | sed -E 's/[^[:alnum:]_.-]+/_/g; s/^_+//; s/_+$//')
        default_merge=${OUT:-output/augment}/synthetic_${label:-label}.jsonl
        ;;
esac
MERGE=${MERGE:-$default_merge}
export MERGE
exports+=",MERGE"

LOG_DIR=${LOG_DIR:-logs}
mkdir -p "$LOG_DIR"
array_opts=(--output="$LOG_DIR/%x-%A_%a.out")
[ -z "${ARRAY:-}" ] || array_opts+=(--array="$ARRAY")
array_id=$("$SBATCH" --parsable "${array_opts[@]}" --export="$exports" "${sbatch_opts[@]}" "slurm/${KIND}_array.sbatch")
array_id=${array_id%%;*}  # --parsable prints "id" or "id;cluster"
merge_id=$("$SBATCH" --parsable --output="$LOG_DIR/%x-%j.out" --dependency="afterok:$array_id" \
    --kill-on-invalid-dep=yes --export="$exports" "${sbatch_opts[@]}" slurm/merge.sbatch)
merge_id=${merge_id%%;*}
echo "array $array_id"
echo "merge $merge_id"
echo "merged file (once both are done): $MERGE" >&2
