# Stagger tasks. `./dev <recipe>` bootstraps the virtualenv first; with it active, call `just`.

set shell := ["sh", "-eu", "-c"]

# List the recipes.
default:
    @just --list

# Run the whole system on embedded defaults (NATS from the wheel, SQLite in ./var, SMTP sink, SMS simulator).
up:
    stagger up

# Run the test suite (PostgreSQL, IMAP and browser tests skip with a reason when absent, except under CI=true).
test *ARGS:
    python -m pytest {{ARGS}}

# Run the benchmarks and write bench/results.json.
bench *ARGS:
    python -m bench {{ARGS}}

# Load test: 1,000 sites, 200,000 SMS in immediate mode through real processes, on SQLite and PostgreSQL (127.0.0.1:5432); writes load.* to bench/results.json. Long: `just load --db sqlite --sites 20 --messages 2000` for a quick run.
load *ARGS:
    python -m bench.load {{ARGS}}

# Chaos check: 3-node NATS cluster (R3), PostgreSQL (127.0.0.1:5432), 2 schedulers, 2 gateways of each kind; SIGKILL the OUTBOX leader's node, then an SMS gateway, mid-run; fails unless 0 lost, 0 duplicates. Default 20,000 messages; `just chaos --messages 2000` for a quick run.
chaos *ARGS:
    python -m bench.chaos {{ARGS}}

# Lint and type-check.
lint:
    ruff check .
    ruff format --check .
    mypy shared services
    lint-imports

# Format the code.
fmt:
    ruff format .
    ruff check --fix .
