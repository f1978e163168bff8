#!/usr/bin/env bash
# Benchmark: what reaching the nodes in docker containers costs, next to a plain lab
# (bench/kinds.sh --docker; see there). Usage: bench/docker.sh [-n RUNS]   (as root)
exec bash "$(dirname "$0")/kinds.sh" --docker "$@"
