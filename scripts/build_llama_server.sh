#!/usr/bin/env bash
# Build llama.cpp's `llama-server` from the llama.cpp sources vendored in the
# llama-cpp-python sdist the service pins, so the benchmark compares the
# service with the very same llama.cpp version.
#
# Usage: scripts/build_llama_server.sh [SRC_DIR] [BUILD_DIR]
#   SRC_DIR    llama.cpp source tree (default: download the pinned sdist with
#              `pip download` into BUILD_DIR/sdist and use its vendor/llama.cpp)
#   BUILD_DIR  CMake build dir (default: /tmp/bench/llama-build)
# Prints the path of the built binary on its last line.
# JOBS (default: nproc) sets the build parallelism.
set -euo pipefail

VERSION=0.3.36
SRC_DIR=${1:-}
BUILD_DIR=${2:-/tmp/bench/llama-build}
JOBS=${JOBS:-$(nproc)}
PYTHON=${PYTHON:-python3}

if [[ -z "$SRC_DIR" ]]; then
    SDIST_DIR="$BUILD_DIR/sdist"
    mkdir -p "$SDIST_DIR"
    if [[ ! -d "$SDIST_DIR/llama_cpp_python-$VERSION" ]]; then
        "$PYTHON" -m pip download --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$SDIST_DIR"
        tar -xzf "$SDIST_DIR/llama_cpp_python-$VERSION.tar.gz" -C "$SDIST_DIR"
    fi
    SRC_DIR="$SDIST_DIR/llama_cpp_python-$VERSION/vendor/llama.cpp"
fi

GENERATOR=()
command -v ninja >/dev/null && GENERATOR=(-G Ninja)

# Only the server is needed: no tests, examples or curl (the benchmark
# passes a local GGUF); native CPU flags like the service's own build.
cmake -S "$SRC_DIR" -B "$BUILD_DIR" "${GENERATOR[@]}" \
    -DCMAKE_BUILD_TYPE=Release \
    -DLLAMA_CURL=OFF \
    -DGGML_NATIVE=ON \
    -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_SERVER=ON
cmake --build "$BUILD_DIR" --config Release --target llama-server -j "$JOBS"
echo "$BUILD_DIR/bin/llama-server"
