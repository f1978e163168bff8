#!/usr/bin/env bash
# Benchmark: what reaching the nodes through sudo costs, next to a plain lab
# (bench/kinds.sh --sudo; see there). Usage: bench/sudo.sh [-n RUNS]   (as root)
exec bash "$(dirname "$0")/kinds.sh" --sudo "$@"
