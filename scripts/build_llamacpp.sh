#!/usr/bin/env bash
# Build llama.cpp (the performance/memory peer) from the llama-cpp-python sdist on PyPI.
#
#   scripts/build_llamacpp.sh            # prints the bin directory on stdout (last line)
#
# Env: FRUGAL_PEER_DIR   cache dir (default ~/.cache/frugal/llamacpp)
#      LLAMACPP_PY_VERSION  the llama-cpp-python version (default: 0.3.36, what the recorded
#                           figures and fixtures were made with; "latest" for PyPI's newest)
#      LLAMACPP_TARGETS     the binaries to build (default: all the scripts use)
#      JOBS              parallel build jobs (default: nproc)
# Idempotent: if the binaries already exist it only prints the bin dir.
# Everything except the final path goes to stderr.
set -euo pipefail

PEER_DIR="${FRUGAL_PEER_DIR:-$HOME/.cache/frugal/llamacpp}"
JOBS="${JOBS:-$(nproc)}"
read -r -a TARGETS <<< "${LLAMACPP_TARGETS:-llama-bench llama-completion llama-simple llama-quantize llama-tokenize llama-imatrix llama-perplexity}"
LLAMACPP_PY_VERSION="${LLAMACPP_PY_VERSION:-0.3.36}"
[[ "$LLAMACPP_PY_VERSION" == latest ]] && LLAMACPP_PY_VERSION=""
log() { echo "[build_llamacpp] $*" >&2; }

mkdir -p "$PEER_DIR"
BIN="$PEER_DIR/build/bin"

all_built() {
    local t
    for t in "${TARGETS[@]}"; do [[ -x "$BIN/$t" ]] || return 1; done
}
if all_built && [[ -f "$PEER_DIR/src/llama.cpp/convert_hf_to_gguf.py" ]]; then
    log "already built ($(cat "$PEER_DIR/VERSION" 2>/dev/null || echo '?'))"
    echo "$BIN"
    exit 0
fi

# --- tools -----------------------------------------------------------------
if ! command -v cmake >/dev/null 2>&1; then
    log "installing cmake via apt-get (else PyPI's cmake wheel)"
    SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"
    if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq cmake; } >&2; then
        python3 -m pip install --user -q cmake >&2
        PATH="$(python3 -m site --user-base)/bin:$PATH"
    fi
fi

# --- source ----------------------------------------------------------------
SRC="$PEER_DIR/src/llama.cpp"
if [[ ! -f "$SRC/CMakeLists.txt" ]]; then
    DL="$PEER_DIR/download"
    mkdir -p "$DL"
    SPEC="llama-cpp-python${LLAMACPP_PY_VERSION:+==$LLAMACPP_PY_VERSION}"
    if ! ls "$DL"/llama_cpp_python-*.tar.gz >/dev/null 2>&1; then
        # NOTE: plain `pip download --no-binary :all: llama-cpp-python` works but first
        # prepares the sdist's metadata, which builds cmake *from source* in an isolated
        # build env (10+ minutes on 2 cores). We therefore resolve the sdist through the
        # index pip itself reads (PyPI's simple API, PEP 691 JSON; sha256-verified) and fall
        # back to pip.
        if ! python3 - "$DL" "${LLAMACPP_PY_VERSION:-}" >&2 <<'EOF'
import hashlib, json, sys, urllib.parse, urllib.request
dest, ver = sys.argv[1], sys.argv[2]
index = "https://pypi.org/simple/llama-cpp-python/"
req = urllib.request.Request(index, headers={"Accept": "application/vnd.pypi.simple.v1+json"})
files = json.load(urllib.request.urlopen(req, timeout=60))["files"]
sdists = [f for f in files if f["filename"].endswith(".tar.gz") and not f.get("yanked")]
if ver:
    u = next(f for f in sdists if f["filename"] == f"llama_cpp_python-{ver}.tar.gz")
else:
    u = max(sdists, key=lambda f: f["upload-time"])
url = urllib.parse.urljoin(index, u["url"])
print("downloading", url)
data = urllib.request.urlopen(url, timeout=600).read()
assert hashlib.sha256(data).hexdigest() == u["hashes"]["sha256"], "sha256 mismatch"
open(dest + "/" + u["filename"], "wb").write(data)
EOF
        then
            log "JSON API download failed; falling back to pip download (slow)"
            pip download --no-deps --no-binary :all: "$SPEC" -d "$DL" >&2
        fi
    fi
    TARBALL=$(ls -t "$DL"/llama_cpp_python-*.tar.gz | head -1)
    log "unpacking $TARBALL"
    rm -rf "$PEER_DIR/unpack" && mkdir -p "$PEER_DIR/unpack"
    tar xzf "$TARBALL" -C "$PEER_DIR/unpack"
    PKG=$(ls -d "$PEER_DIR"/unpack/llama_cpp_python-*/ | head -1)
    PYVER=$(basename "$PKG" | sed 's/^llama_cpp_python-//')
    # the sdist carries no git metadata; the CHANGELOG names the vendored commit
    COMMIT=$(awk -v v="$PYVER" '$0 ~ "^## \\[" v "\\]" {f=1; next} /^## \[/ {f=0} f' "$PKG/CHANGELOG.md" \
             | grep -o 'llama.cpp@[0-9a-f]*' | head -1 | sed 's/.*@//')
    mkdir -p "$PEER_DIR/src"
    rm -rf "$SRC"
    mv "$PKG/vendor/llama.cpp" "$SRC"
    rm -rf "$PEER_DIR/unpack"
    echo "llama-cpp-python $PYVER, llama.cpp ${COMMIT:-unknown}" > "$PEER_DIR/VERSION"
fi
COMMIT=$(grep -o '[0-9a-f]*$' "$PEER_DIR/VERSION" || echo unknown)
log "source: $(cat "$PEER_DIR/VERSION")"

# --- build -----------------------------------------------------------------
start=$(date +%s)
cmake -S "$SRC" -B "$PEER_DIR/build" \
    -DCMAKE_BUILD_TYPE=Release \
    -DGGML_NATIVE=ON \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF \
    -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_EXAMPLES=ON \
    -DLLAMA_BUILD_COMMIT="$COMMIT" \
    -DBUILD_SHARED_LIBS=OFF >&2
cmake --build "$PEER_DIR/build" --config Release -j "$JOBS" --target "${TARGETS[@]}" >&2
log "build took $(( $(date +%s) - start )) s"
all_built || { log "missing binaries in $BIN"; exit 1; }
echo "$BIN"
