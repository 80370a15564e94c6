#!/usr/bin/env bash
# Grade one assignment on a Slurm cluster: `nbgrader autograde` and the out-of-kernel model scoring,
# sharded by student across GPU nodes, then merged into the course gradebook.
#
# Run from the course root (where nbgrader_config.py, gradebook.db and submitted/ are), after
# `nbgrader collect` and `nbgrader generate_assignment`:
#
#   bash scripts/slurm_grade.sh submit 06_challenge 8     # 8 array tasks + one merge job after them
#
# which is the same as submitting the two jobs yourself:
#
#   sbatch --array=0-7 scripts/slurm_grade.sh shard 06_challenge 8
#   sbatch --dependency=afterany:<array job id> scripts/slurm_grade.sh merge 06_challenge 8
#
# Array task i handles the students with index j (in sorted order) where j mod N == i, with its own
# gradebook shards/gradebook-i.db (nbgrader's sqlite gradebook takes one writer at a time, so
# the shards never share one). If a shard fails, rerun only it (sbatch --array=3 ... shard ...) and
# then the merge; the merge is idempotent.
#
# Settings (environment variables):
#   COURSE_ROOT   the course folder (default: the folder sbatch was called from, else .)
#   COURSE_DB     the course gradebook file (default: gradebook.db)
#   PYTHON        the Python with helpers and nbgrader (default: .venv/bin/python if present, else python)
#   GRADE_ARGS    extra options for `python -m helpers grade`, e.g. "--timeout 300 --dataset cifar10"
#   MERGE_SBATCH_ARGS  extra sbatch options for the merge job (submit mode), e.g. "--partition=cpu"
#   DRY_RUN=1     print the autograde/grade/merge/sbatch commands instead of running them (the student
#                 selection still runs): for checking a setup, and for the tests
#
#SBATCH --job-name=grade
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=4
#SBATCH --mem=16G
#SBATCH --time=02:00:00
#SBATCH --output=grade-%A_%a.out

set -euo pipefail

MODE="${1:?usage: slurm_grade.sh submit|shard|merge ASSIGNMENT NUM_SHARDS}"
ASSIGNMENT="${2:?missing ASSIGNMENT (e.g. 06_challenge)}"
NUM_SHARDS="${3:?missing NUM_SHARDS (the number of array tasks)}"

# Work in the course root; every path below is relative to it.
cd "${COURSE_ROOT:-${SLURM_SUBMIT_DIR:-.}}"
COURSE_DB="${COURSE_DB:-gradebook.db}"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi
# shellcheck disable=SC2206  # GRADE_ARGS is a list of options, split on purpose
GRADE_EXTRA=(${GRADE_ARGS:-})

# Run a command, or only print it when DRY_RUN=1.
run() {
    if [[ "${DRY_RUN:-0}" == "1" ]]; then
        echo "+ $*"
    else
        "$@"
    fi
}

case "$MODE" in
submit)
    # Step 0 (on the login node): submit the array, then the merge to start once every task ended.
    script="$(realpath "$0" 2>/dev/null || echo "$0")"
    if [[ "${DRY_RUN:-0}" == "1" ]]; then
        job="<array job id>"
        echo "+ sbatch --parsable --array=0-$((NUM_SHARDS - 1)) $script shard $ASSIGNMENT $NUM_SHARDS"
    else
        job="$(sbatch --parsable --array=0-$((NUM_SHARDS - 1)) "$script" shard "$ASSIGNMENT" "$NUM_SHARDS")"
        job="${job%%;*}"  # --parsable prints "jobid[;cluster]"
    fi
    # afterany: merge whatever finished; the merge reports shards that are missing. The merge needs
    # no GPU: add e.g. MERGE_SBATCH_ARGS="--partition=cpu" where the cluster has such a partition.
    # shellcheck disable=SC2086  # a list of options, split on purpose
    run sbatch --dependency="afterany:$job" --time=00:30:00 --output="grade-merge-%j.out" \
        ${MERGE_SBATCH_ARGS:-} "$script" merge "$ASSIGNMENT" "$NUM_SHARDS"
    ;;

shard)
    SHARD="${SHARD:-${SLURM_ARRAY_TASK_ID:?run this mode as a Slurm array task, or set SHARD=i}}"
    SHARD_DB="shards/gradebook-$SHARD.db"
    mkdir -p shards
    echo "shard $SHARD of $NUM_SHARDS for $ASSIGNMENT on $(hostname), gradebook $SHARD_DB"

    # Step 1: this shard's gradebook: the course gradebook's assignments, cells and students,
    # with no submissions (so merging can never bring back another shard's old grades).
    run "$PYTHON" -m helpers grade shard-init --from "$COURSE_DB" --to "$SHARD_DB"

    # Step 2: the students of this shard: sorted index j with j mod NUM_SHARDS == SHARD.
    mapfile -t STUDENTS < <("$PYTHON" -m helpers grade shard-students "$ASSIGNMENT" \
        --shard "$SHARD" --of "$NUM_SHARDS" --course-root .)
    echo "students: ${STUDENTS[*]:-(none)}"

    # Step 3: autograde them one at a time into the shard gradebook. A failure is logged and the
    # shard goes on: nbgrader already scores a broken notebook, this only catches crashes.
    for student in ${STUDENTS[@]+"${STUDENTS[@]}"}; do
        run "$PYTHON" -m nbgrader autograde "$ASSIGNMENT" --student "$student" --force \
            --CourseDirectory.db_url="sqlite:///$PWD/$SHARD_DB" \
            || echo "autograde failed for $student (continuing with the others)"
    done

    # Step 4: score the models of the same students outside their kernels (on this node's GPU) and
    # write the scores into the shard gradebook; reports go to shards/out-SHARD/.
    if (( ${#STUDENTS[@]} > 0 )); then
        run "$PYTHON" -m helpers grade "$ASSIGNMENT" --course-root . --db "$SHARD_DB" \
            --shard "$SHARD" --of "$NUM_SHARDS" --out "shards/out-$SHARD" ${GRADE_EXTRA[@]+"${GRADE_EXTRA[@]}"}
    fi
    ;;

merge)
    # Step 5 (after every array task): check that each shard left a gradebook, then merge them
    # all into the course gradebook and combine the shard reports into reports/.
    missing=()
    for ((i = 0; i < NUM_SHARDS; i++)); do
        [[ -f "shards/gradebook-$i.db" ]] || missing+=("$i")
    done
    if (( ${#missing[@]} > 0 )) && [[ "${DRY_RUN:-0}" != "1" ]]; then
        echo "shards without a gradebook: ${missing[*]}; rerun them with sbatch --array=<those> ... shard" >&2
        exit 1
    fi
    shard_dbs=()
    reports=()
    for ((i = 0; i < NUM_SHARDS; i++)); do
        shard_dbs+=("shards/gradebook-$i.db")
        [[ -f "shards/out-$i/grades-$ASSIGNMENT.csv" ]] && reports+=("shards/out-$i/grades-$ASSIGNMENT.csv")
    done
    run "$PYTHON" -m helpers grade merge --into "$COURSE_DB" "${shard_dbs[@]}" \
        --assignment "$ASSIGNMENT" --out reports ${reports[@]+--reports "${reports[@]}"}
    ;;

*)
    echo "unknown mode '$MODE': use submit, shard or merge" >&2
    exit 2
    ;;
esac
