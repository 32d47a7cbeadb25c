# s3sftp developer tasks. Every target runs on the pinned Node 24 (scripts/ensure-node.sh
# installs it from the npm registry when the system Node is older).
SHELL := /bin/bash
NODE_BIN := $(shell scripts/ensure-node.sh)
export PATH := $(NODE_BIN):$(PATH)
# Native addons (ssh2's crypto binding, cpu-features, argon2) build against Node 24's headers.
export npm_config_nodedir := $(abspath $(NODE_BIN)/..)

.PHONY: help install deps system-deps build typecheck lint test test-unit bench run clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

install: node_modules/.installed ## install npm dependencies (npm ci)

system-deps: ## install the Debian packages the tests need (Swift, memcached, SFTP clients)
	bash dev/system-deps.sh

build: install ## compile TypeScript to dist/
	npm run build

typecheck: install ## type-check sources and tests
	npm run typecheck

lint: typecheck ## static checks (type-check; sftp/ssh/scp must not import the AWS SDK)
	@! grep -rnE "from '@aws-sdk|from '@kubernetes" src/sftp src/ssh src/scp 2>/dev/null || (echo "protocol layers must not import the AWS SDK or client-node"; exit 1)

test: install system-deps typecheck ## run the whole test suite (unit + integration, real Swift S3 and real SFTP clients)
	npm test

test-unit: install ## run the unit tests only
	npm run test:unit

bench: install system-deps ## run the benchmarks (ratios against a baseline measured in the same run)
	npm run bench

run: install system-deps ## start a local Swift S3 emulator and the server with a demo user
	node dev/run.ts

clean: ## remove build output and local state
	rm -rf dist .run
