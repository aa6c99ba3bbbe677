# Sourced by bench/callgrind and bench/syscalls: write_agent_config DIR writes the psstd config
# they measure with into DIR — the socket, the local store and the policy there, the log at
# warn, audit records on (AUDIT=false: off) to stderr, the journal beside the socket.
write_agent_config() {
  local dir="$1"
  cat > "$dir/policy.toml" <<TOML
[[rule]]
name = "bench"
caller = { uid = [$(id -u)] }
allow = { read = ["local:**"], write = ["local:**"] }
TOML
  cat > "$dir/psstd.toml" <<TOML
[server]
socket = "$dir/psst.sock"
[log]
level = "warn"
[audit]
enabled = ${AUDIT:-true}
[policy]
file = "$dir/policy.toml"
[[backend]]
type = "local"
dir = "$dir/store"
ttl = "1h"
TOML
}
