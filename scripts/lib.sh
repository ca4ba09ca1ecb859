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
