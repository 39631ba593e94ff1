# shellcheck shell=bash
# Shared by every slurm/*.sbatch template (sourced, never run): environment set-up, logging, and running one
# python step so that a SLURM preemption or time limit stops it cleanly and requeues the job.
#
# A template does:
#     cd "${SLURM_SUBMIT_DIR:-.}" && source slurm/common.sh
#     ss_given MODEL QUANT                  # the method variables you set yourself (before their defaults)
#     MODEL=${MODEL:-some/default} ...      # the template's variables and defaults
#     ss_setup                              # SS_JOB_ARGS: --preset/--config; SS_ARGS: empty
#     SS_ARGS=(--input "$INPUT"); ss_opt MODEL -m; ss_opt QUANT -q   # ss_opt skips a default under PRESET
#     ss_run "$PYTHON" some_script.py "${SS_JOB_ARGS[@]}" "${SS_ARGS[@]}"   # python's exit status; requeue on 143
#
# Variables read here (all overridable with sbatch --export=ALL,VAR=value):
#   VENV      virtual environment to activate when none is active (default: .venv of the repository)
#   PYTHON    interpreter to run (default: python, i.e. the activated environment's)
#   SRUN      launcher for the step (default: srun, so the step shows in sacct; SRUN= (empty) runs it directly)
#   REQUEUE   1 (default): requeue the job when the step stopped cleanly on SIGTERM (exit 143); 0: just exit 143
#   PRESET    a paper's settings (`--preset NAME`, see the script's --list-presets), passed to the step first. Its
#             values sit under JOB_FILE and the step's flags, so a template variable that you set overrides the
#             preset, and one that you leave unset is not passed (ss_given/ss_opt below): the preset's model,
#             quantization, ... stay. The input and output variables are always passed.
#   JOB_FILE  a job file (YAML, `--config`, what `--print-config` writes); see each template for what it replaces
#   HF_HUB_OFFLINE  1 unless set: compute nodes often have no internet, and 100 array tasks should not all hit
#             the Hub; download models on a login node first (HF_HUB_OFFLINE=0 to allow downloads)
#
# The preemption story: submit with --signal=B:TERM@120 (all templates do), so that SLURM sends SIGTERM to this
# batch shell 120 s before the time limit (and on preemption, with a site grace time). The trap below passes it
# on to the step; the socialsynth scripts finish the chunk in flight, flush and write their meta, and exit 143
# ("stopped cleanly, rerun to resume"). The shell then calls `scontrol requeue $SLURM_JOB_ID`: the same task runs
# again later and every script resumes from what it wrote (JSONL ids, the parse/embedding caches, the Trainer
# checkpoint). A kill without warning (node failure, SIGKILL) loses at most the chunk in flight; with #SBATCH
# --requeue SLURM requeues it by itself and the rerun repairs a half-written last line.

ss_log() {
    # One log line with a timestamp and the job/array task it comes from.
    echo "$(date -Is) [${SLURM_ARRAY_JOB_ID:-${SLURM_JOB_ID:-local}}${SLURM_ARRAY_TASK_ID:+_$SLURM_ARRAY_TASK_ID}] $*"
}

ss_die() {
    ss_log "error: $*" >&2
    exit 2
}

ss_require() {
    # ss_require VAR...: fail with a clear message when a variable the template needs is empty.
    local name
    for name in "$@"; do
        [ -n "${!name:-}" ] || ss_die "$name is not set (sbatch --export=ALL,$name=...)"
    done
}

ss_setup() {
    # Activate the project's environment unless one is active, and log where and what runs.
    VENV=${VENV:-.venv}
    if [ -z "${VIRTUAL_ENV:-}" ] && [ -z "${CONDA_PREFIX:-}" ] && [ -f "$VENV/bin/activate" ]; then
        # shellcheck disable=SC1091
        source "$VENV/bin/activate"
    fi
    PYTHON=${PYTHON:-python}
    SRUN=${SRUN-srun}
    if [ -n "$SRUN" ] && ! command -v "${SRUN%% *}" >/dev/null; then
        SRUN=  # not under SLURM (a test, a workstation): run the step directly
    fi
    REQUEUE=${REQUEUE:-1}
    export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}  # compute nodes rarely reach the Hub: download on a login node
    # --preset then --config go first: the step's own flags (the template's variables, EXTRA_ARGS) override both
    SS_JOB_ARGS=()
    [ -z "${PRESET:-}" ] || SS_JOB_ARGS+=(--preset "$PRESET")
    [ -z "${JOB_FILE:-}" ] || SS_JOB_ARGS+=(--config "$JOB_FILE")
    SS_ARGS=()
    if [ -n "${PRESET:-}" ]; then
        local given
        read -r -a given <<<"${SS_GIVEN:-}"
        ss_log "preset $PRESET${given[*]:+, overridden by your ${given[*]}}"
    fi
    ss_log "on $(hostname) in $(pwd): task ${SLURM_ARRAY_TASK_ID:-(not an array)} of" \
        "${SLURM_ARRAY_TASK_COUNT:-1}, restart ${SLURM_RESTART_COUNT:-0}, python $(command -v "$PYTHON")"
}

ss_given() {
    # ss_given VAR...: the template's method variables (model, quantization, ...), called before their defaults:
    # remember which of them you set, so that with PRESET one left unset does not override the preset with the
    # template's own default.
    local name
    for name in "$@"; do
        SS_METHOD="${SS_METHOD:-} $name "
        [ -z "${!name:-}" ] || SS_GIVEN="${SS_GIVEN:-} $name "
    done
}

ss_keep() {
    # ss_keep VAR: true when VAR's flag goes to the step: no PRESET, VAR is no method variable, or you set it.
    [ -z "${PRESET:-}" ] || [[ "${SS_METHOD:-}" != *" $1 "* ]] || [[ "${SS_GIVEN:-}" == *" $1 "* ]]
}

ss_opt() {
    # ss_opt VAR FLAG: append FLAG "$VAR" to SS_ARGS when VAR is not empty and ss_keep VAR holds.
    [ -n "${!1:-}" ] && ss_keep "$1" && SS_ARGS+=("$2" "${!1}")
    return 0
}

_ss_forward_term() {
    ss_log "SIGTERM: asking the step (pid $SS_PID) to finish its chunk and stop"
    kill -TERM "$SS_PID" 2>/dev/null
    wait "$SS_PID"
    SS_STATUS=$?
}

ss_run() {
    # ss_run CMD ARGS...: run one step in the background (bash runs traps only between commands, and `wait`
    # returns as soon as a trapped signal arrives), forward SIGTERM to it, requeue the job on exit 143.
    SS_STATUS=
    ss_log "run: $*"
    trap _ss_forward_term TERM
    if [ -n "$SRUN" ]; then
        # shellcheck disable=SC2086  # SRUN may carry options, e.g. SRUN="srun --cpu-bind=none"
        $SRUN "$@" &
    else
        "$@" &
    fi
    SS_PID=$!
    wait "$SS_PID"
    SS_STATUS=${SS_STATUS:-$?}
    trap - TERM
    if [ "$SS_STATUS" -eq 143 ]; then
        if [ "$REQUEUE" = 1 ] && [ -n "${SLURM_JOB_ID:-}" ]; then
            ss_log "stopped cleanly before the time limit (exit 143): requeueing job $SLURM_JOB_ID; the rerun resumes"
            scontrol requeue "$SLURM_JOB_ID" || ss_log "scontrol requeue failed: resubmit the same command to resume"
        else
            ss_log "stopped cleanly (exit 143): run the same command again to resume"
        fi
    elif [ "$SS_STATUS" -ne 0 ]; then
        ss_log "step failed with exit $SS_STATUS (2: bad input or arguments, see the error line above)"
    else
        ss_log "step done"
    fi
    return "$SS_STATUS"
}
