# Sourced by the scripts that install tools: where installs are cached, outside the clone, so that
# fresh clones, CI runs and `cargo clean` reuse them.
#   $KL_CACHE_DIR                                     when set
#   /var/cache/kafka-lambdas                          when run as root (readable by the postgres user)
#   ${XDG_CACHE_HOME:-$HOME/.cache}/kafka-lambdas     otherwise
kl_cache_dir() {
    if [ -n "${KL_CACHE_DIR:-}" ]; then
        printf '%s\n' "$KL_CACHE_DIR"
    elif [ "$(id -u)" = 0 ]; then
        printf '%s\n' /var/cache/kafka-lambdas
    else
        printf '%s\n' "${XDG_CACHE_HOME:-$HOME/.cache}/kafka-lambdas"
    fi
}
