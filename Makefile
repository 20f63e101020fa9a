# backy: build, demo, tests and benchmarks. Every target installs the Debian
# packages it needs first (scripts/install-deps, idempotent).

SWIFT ?= swift
BIN := .build/debug/backy
RELEASE_BIN := .build/release/backy

.PHONY: all deps build release demo test test-quick torture mutate mutate-check bench clean

all: build

deps:
	scripts/install-deps

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release

# Back up the fixture image, change a file, back up again, restore both
# revisions, read a file out of each, serve them over NBD.
demo: build
	scripts/demo

# The whole test suite: unit tests and end-to-end tests against the built
# binary, a real Ceph cluster and real NBD clients.
test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test

# The unit tests only (no end-to-end tests, no Ceph cluster): a minute.
test-quick: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build --skip EndToEndTests

# The longer fault runs (hundreds of kills, 100,000 NBD fuzz cases). Fails
# if any case fails; prints counted figures and seeds.
torture: build
	bench/torture
	bench/nbd-fuzz

# The mutation check (mutations/README.md): each deliberate break in
# mutations/ applied to a scratch copy (.build-mutate/), the tests that must
# catch it run; a table; fails if one survives. Slow (about an hour), not CI.
mutate: deps
	scripts/mutate

# Only look up the mutations' code patterns in Sources/ (seconds).
mutate-check:
	scripts/mutate --check

# Benchmarks (release build): backup/restore, NBD, mount and drill, scheduler, Ceph.
bench: release
	bench/backup-restore
	bench/nbd
	bench/mount
	bench/scheduler
	bench/ceph

clean:
	rm -rf .build .build-mutate demo-work bench/work
