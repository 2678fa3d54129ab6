# What the benchmark scripts share; `source` it after `cd` to the repository.

# A port nothing listens on now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Waits up to 20 s for something to accept connections on port $1.
wait_port() { for _ in $(seq 200); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done; echo "nothing on port $1" >&2; exit 1; }

# Starts a nisshi broker (memory storage) logging to $1; sets $port and $broker.
start_broker() {
  port=$(free_port)
  "${NISSHI_BIN:-$HOME/.cache/cartflow/tools/bin/nisshi}" broker --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$port" --storage-engine memory://nisshi/ >"$1" 2>&1 &
  broker=$!
  wait_port "$port"
}
