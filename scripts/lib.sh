# Shared by the scripts in this folder: find or install what they need, loudly.

log() { printf '\n==> %s\n' "$*" >&2; }

require_rust() {
    if ! command -v cargo >/dev/null 2>&1; then
        echo "cargo not found: install the Rust toolchain with rustup first (see README.md)" >&2
        exit 1
    fi
}

# Installs a rustup component (rustfmt, clippy) when it is missing.
require_component() {
    local component=$1 probe
    case $component in
        rustfmt) probe="cargo fmt --version" ;;
        clippy) probe="cargo clippy --version" ;;
        *) probe="false" ;;
    esac
    if ! $probe >/dev/null 2>&1; then
        log "installing the rustup component $component"
        rustup component add "$component"
    fi
}

# Versions that work together on Rust 1.95 (see ../shared/TOOLCHAIN.md). wasm-bindgen-cli
# must equal the wasm-bindgen in Cargo.lock exactly.
TRUNK_VERSION=0.21.14
WASM_BINDGEN_VERSION=0.2.130
BINARYEN_VERSION=132

# Project-local tools (binaryen from npm) live here, first on PATH.
TOOLS_DIR="$PWD/.tools"
export PATH="$TOOLS_DIR/node_modules/.bin:$HOME/.cargo/bin:$PATH"

# Everything `trunk build` needs, installed when missing: the wasm32 target, trunk,
# wasm-bindgen-cli and wasm-opt (binaryen from npm; Debian's is too old and breaks the module).
require_web_tools() {
    if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
        log "installing the rustup target wasm32-unknown-unknown"
        rustup target add wasm32-unknown-unknown
    fi
    if ! trunk --version 2>/dev/null | grep -q " $TRUNK_VERSION\$"; then
        log "installing trunk $TRUNK_VERSION from crates.io (about 15 minutes on 2 cores, once)"
        cargo install --locked trunk --version "$TRUNK_VERSION"
    fi
    if ! wasm-bindgen --version 2>/dev/null | grep -q " $WASM_BINDGEN_VERSION"; then
        log "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION from crates.io (a few minutes, once)"
        # Not --locked: its lock file pins a webpki-roots release the registry lacks.
        cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION"
    fi
    if ! wasm-opt --version 2>/dev/null | grep -q "version $BINARYEN_VERSION"; then
        require_command npm "Node.js and npm"
        log "installing binaryen $BINARYEN_VERSION (wasm-opt) from npm into .tools/"
        mkdir -p "$TOOLS_DIR"
        npm install --prefix "$TOOLS_DIR" --no-audit --no-fund "binaryen@$BINARYEN_VERSION" >&2
    fi
}

# Headless Chromium and its WebDriver, for browser tests, from Debian's packages.
require_chromium() {
    if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
        return
    fi
    log "installing chromium and chromium-driver from Debian's packages"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update
    # The emoji font only for the README's screenshot (UPDATE_SCREENSHOT=1): without it
    # Chromium draws reactions as blanks. No test depends on it.
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends \
        chromium chromium-driver fonts-noto-color-emoji
}

# nginx for the end-to-end test of the README's load-balancer example, and openssl for its
# certificate, from Debian's packages. Debian starts a package's service as it installs it;
# a policy-rc.d that says no keeps a system nginx from taking port 80 (and the install from
# failing where port 80 is taken).
require_nginx() {
    # With its stream module, for the e2e test of a layer-4 load balancer
    # (e2e/proxy_protocol.test.mjs).
    if [ -x /usr/sbin/nginx ] && [ -e /usr/lib/nginx/modules/ngx_stream_module.so ] \
        && command -v openssl >/dev/null 2>&1; then
        return
    fi
    log "installing nginx, its stream module and openssl from Debian's packages"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update
    local policy=/usr/sbin/policy-rc.d
    local own_policy=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
        $sudo chmod +x "$policy"
        own_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends nginx libnginx-mod-stream openssl \
        || { [ -z "$own_policy" ] || $sudo rm -f "$policy"; return 1; }
    [ -z "$own_policy" ] || $sudo rm -f "$policy"
}

require_command() {
    if ! command -v "$1" >/dev/null 2>&1; then
        echo "$1 not found: install $2 first" >&2
        exit 1
    fi
}

# Builds the web UI into dist/ (release, offline: trunk uses the tools installed above).
build_ui() {
    log "building the web UI (trunk build --release)"
    cargo fetch --locked >/dev/null
    trunk build --release
}

# A PostgreSQL for the API suite's second run: CHAT_TEST_DATABASE_URL if set, else the one on
# 127.0.0.1:5432; when none answers, Debian's `postgresql` is installed and its cluster started
# (trust auth on 127.0.0.1 for the suite's throwaway databases). Exports CHAT_TEST_DATABASE_URL.
require_postgres() {
    export CHAT_TEST_DATABASE_URL="${CHAT_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
    if pg_answers; then
        return
    fi
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
        log "installing postgresql from Debian's packages"
        $sudo apt-get update
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends postgresql
    fi
    local version
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    local hba="/etc/postgresql/$version/main/pg_hba.conf"
    if ! $sudo grep -q "^host all all 127.0.0.1/32 trust" "$hba"; then
        # First match wins: the suite's line goes before Debian's password rules.
        $sudo sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
    fi
    log "starting PostgreSQL $version"
    # initdb refuses root; pg_ctlcluster runs the server as the postgres user.
    $sudo pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq 1 30); do
        if pg_answers; then
            return
        fi
        sleep 1
    done
    echo "PostgreSQL does not answer at $CHAT_TEST_DATABASE_URL" >&2
    exit 1
}

pg_answers() {
    command -v pg_isready >/dev/null 2>&1 && pg_isready -q -d "$CHAT_TEST_DATABASE_URL" -t 3
}
