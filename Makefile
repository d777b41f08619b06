# Ferry's two entry points: `make demo` runs a SyncJob on throwaway databases; `make test` is
# what CI runs (.ci/run).
CARGO ?= cargo

.PHONY: demo demo-mariadb test deps lint crds crds-check bench bench-mysql bench-operator bench-compare

## demo: two throwaway PostgreSQL servers, sample data, a FULL_INCR_TRANS job run by
## `ferry run` while writes go on, then a row-by-row comparison
demo: deps
	$(CARGO) build --release --locked --bin ferry
	$(CARGO) run --release --locked --quiet --example demo

## demo-mariadb: the same with two throwaway MariaDB servers
demo-mariadb: deps
	$(CARGO) build --release --locked --bin ferry
	$(CARGO) run --release --locked --quiet --example demo_mariadb

## test: install what is missing, then format check, clippy, CRD drift check and every test
test: deps lint crds-check
	$(CARGO) test --locked

## deps: system packages the tests need (apt as root, else the command to run)
deps:
	@scripts/install-deps.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

## crds: regenerate crds/ from the Rust types
crds:
	$(CARGO) run --locked --quiet -- crd --out-dir crds

## crds-check: fail when crds/ differs from what the Rust types generate
crds-check: crds
	@if git rev-parse --is-inside-work-tree >/dev/null 2>&1 && [ -n "$$(git status --porcelain -- crds)" ]; then \
		git status --short -- crds; git --no-pager diff --stat -- crds; \
		echo "error: crds/ is stale; commit the regenerated files (make crds)" >&2; exit 1; \
	fi

## bench: Ferry's PostgreSQL full transfer and change stream side by side with pg_dump and pgcopydb
bench:
	scripts/bench-pg.sh

## bench-mysql: Ferry's MariaDB full transfer and change stream side by side with mysqldump,
## mydumper/myloader and a sysbench write load
bench-mysql:
	scripts/bench-mysql.sh

## bench-operator: 1,000 SyncJobs in the controller's store reconciled against a mocked API:
## reconciles per second and memory
bench-operator:
	$(CARGO) run --release --locked --quiet --example bench_operator

## bench-compare: content comparison throughput beside an md5-per-chunk aggregate (PostgreSQL)
## and CHECKSUM TABLE (MariaDB)
bench-compare: deps
	$(CARGO) run --release --locked --quiet --example bench_compare
