# Wingman: the two commands a newcomer needs are `make run` and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= var
# Test processes (pytest-xdist): each starts its own PostgreSQL and Redis servers; 0 runs in one.
TEST_WORKERS ?= 2

.PHONY: run test test-debian13 bootstrap lint typecheck format check down status build clean image image-test bundle

## Set up (venv, dependencies, PostgreSQL/Redis binaries) and run the whole stack until Ctrl-C.
run: bootstrap
	$(BIN)/wingmanctl dev run --data-dir $(DATA)

## Set up, then run the whole test suite (tests start their own PostgreSQL and Redis).
test: bootstrap
	$(BIN)/pytest -n $(TEST_WORKERS)

## Bootstrap, unit and integration tests and a `make run` round trip on a clean Debian 13 root
## filesystem with its Python 3.13, PostgreSQL 17 and Redis (root; base cached in var/debian13-cache).
test-debian13:
	scripts/ci-debian13

bootstrap:
	@scripts/bootstrap

lint: bootstrap
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: bootstrap
	$(BIN)/mypy

format: bootstrap
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

check: lint typecheck test

status:
	$(BIN)/wingmanctl dev status --data-dir $(DATA)

down:
	$(BIN)/wingmanctl dev down --data-dir $(DATA)

build: bootstrap
	$(BIN)/python -m build --outdir dist .

## Build an upgrade bundle for `wingmanctl upgrade` (the wingman wheel and the locked runtime
## wheels, checksummed) into var/bundle/wingman-<version>-bundle.tar.
bundle: bootstrap
	scripts/build-bundle

clean:
	rm -rf dist build .pytest_cache .mypy_cache .ruff_cache

## Build the appliance image into var/image and localhost/wingman (root; Debian packages cached
## in var/image-cache).
image: bootstrap
	scripts/build-image --oci

## Build the image, boot it twice with systemd-nspawn (the second time on one core, same data),
## with podman, then twice under QEMU; each boot checks a sign-in and an AI reply (VM_BOOTS=1:
## one QEMU boot).
image-test: image
	scripts/image-test
	scripts/image-test-container
	scripts/image-test-vm
