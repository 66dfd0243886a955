#!/usr/bin/env bash
# A canary rollout for a CI/CD pipeline, with the modelgate CLI.
#
#   MODELGATE_URL=http://gateway:8000 MODELGATE_TOKEN=... \
#     examples/rollout.sh MODEL VERSION [rollout start options, e.g. --steps 10,50,100 --alias prod]
#
# Starts the rollout, follows it step by step until it ends, and exits
#   0 when VERSION was promoted (all traffic on it, the alias moved),
#   3 when a gate rolled it back (the reason is printed), 4 when it was aborted,
#   1 when the API refused (e.g. another rollout is active), 2 on a usage error.
# Interrupting the script (Ctrl-C, a cancelled pipeline) aborts the rollout: traffic goes
# back to the baseline rather than staying split. MODELGATE_CLI overrides the command
# (default "modelgate"), e.g. MODELGATE_CLI="python -m modelgate".
set -euo pipefail

if [[ $# -lt 2 ]]; then
    echo "usage: $0 MODEL VERSION [modelgate rollout start options]" >&2
    exit 2
fi
model=$1 version=$2
shift 2
read -r -a cli <<<"${MODELGATE_CLI:-modelgate}"

id="" watcher=""
abort() {
    echo "interrupted: aborting rollout ${id:+#$id }of $model" >&2
    [[ -n $watcher ]] && kill "$watcher" 2>/dev/null
    # Before the id is known: the model's active rollout, the one just started if any.
    "${cli[@]}" rollout abort "$model" ${id:+"$id"} >&2 || true
    exit 130
}
# NOTE: set before the start, so that a signal while it is answered still aborts it.
trap abort INT TERM

started=$("${cli[@]}" rollout start "$model" "$version" "$@" -o json)
# The rollout's own "id" is the only "id" key of the document.
id=$(grep -oE '"id": *[0-9]+' <<<"$started" | head -n 1 | grep -oE '[0-9]+' || true)
if [[ -z $id ]]; then
    echo "unexpected answer from rollout start: $started" >&2
    exit 1
fi
echo "rollout #$id: $model -> $version started" >&2

# In the background so that a signal reaches the trap at once, not when the watch ends.
"${cli[@]}" rollout status "$model" "$id" --watch &
watcher=$!
status=0
wait "$watcher" || status=$?
trap - INT TERM

case $status in
    0) echo "rollout #$id: $model $version promoted" >&2 ;;
    3) echo "rollout #$id: $model $version ROLLED BACK" >&2 ;;
    4) echo "rollout #$id: $model $version aborted" >&2 ;;
    *) echo "rollout #$id: could not follow it (exit $status)" >&2 ;;
esac
exit "$status"
