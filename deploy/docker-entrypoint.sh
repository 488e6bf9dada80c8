#!/bin/sh
# The container's entry point: `swapwatch ARGS` (default `serve`), with the service token read
# from the file SWAPWATCH_AUTH_TOKEN_FILE names when it is set (a Docker/Compose secret, a mounted
# Kubernetes Secret). The variable itself is dropped: the service refuses unknown SWAPWATCH_*.
set -eu
if [ -n "${SWAPWATCH_AUTH_TOKEN_FILE:-}" ]; then
    if [ ! -r "$SWAPWATCH_AUTH_TOKEN_FILE" ]; then
        echo "swapwatch: SWAPWATCH_AUTH_TOKEN_FILE=$SWAPWATCH_AUTH_TOKEN_FILE cannot be read" >&2
        exit 2
    fi
    SWAPWATCH_AUTH_TOKEN=$(tr -d '\r\n' < "$SWAPWATCH_AUTH_TOKEN_FILE")
    export SWAPWATCH_AUTH_TOKEN
    unset SWAPWATCH_AUTH_TOKEN_FILE
fi
exec swapwatch "$@"
