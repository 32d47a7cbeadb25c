# s3sftp developer tasks. Every target runs on the pinned Node 24 (scripts/ensure-node.sh
# installs it from the npm registry when the system Node is older).
SHELL := /bin/bash
NODE_BIN := $(shell scripts/ensure-node.sh)
export PATH := $(NODE_BIN):$(PATH)
# Native addons (ssh2's crypto binding, cpu-features, argon2) build against Node 24's headers.
export npm_config_nodedir := $(abspath $(NODE_BIN)/..)

# The server version (package.json) tags the image; the chart version (Chart.yaml) names its package.
# Recursive (=) so that only the targets using them run the commands.
VERSION = $(shell $(NODE_BIN)/node -p "require('./package.json').version")
CHART_DIR := charts/s3sftp
CHART_NAME := $(notdir $(CHART_DIR))
CHART_VERSION = $(shell sed -n -E 's/^version:[[:space:]]*"?([^"[:space:]]+)"?.*$$/\1/p' $(CHART_DIR)/Chart.yaml)
# `make chart HELM=/nonexistent` forces the tar fallback (the tests use it).
HELM ?= helm

.PHONY: help install deps system-deps build typecheck lint test test-unit fuzz bench run image chart clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

# A node_modules that is a symlink is another checkout's install (git worktrees): npm ci would
# follow the link and empty it under everyone using it, so it is left alone.
node_modules/.installed: package.json package-lock.json
	@if [ -L node_modules ]; then echo "node_modules is a symlink to a shared install: not running npm ci" >&2; \
	else npm ci --no-audit --no-fund; fi
	@touch $@

install: node_modules/.installed ## install npm dependencies (npm ci)

system-deps: ## install the Debian packages the tests need (Swift, memcached, SFTP clients)
	bash dev/system-deps.sh

build: install ## compile TypeScript to dist/
	npm run build

typecheck: install ## type-check sources and tests
	npm run typecheck

lint: typecheck ## static checks (type-check; sftp/ssh/scp/session/exec/users must not import the AWS SDK or client-node)
	@! grep -rnE "from '@aws-sdk|from '@kubernetes" src/sftp src/ssh src/scp src/session src/exec src/users 2>/dev/null || (echo "protocol layers and users/ must not import the AWS SDK or client-node"; exit 1)

test: install system-deps typecheck ## run the whole test suite (unit + integration, real Swift S3 and real SFTP clients)
	npm test

test-unit: install ## run the unit tests only
	npm run test:unit

# FUZZ_PACKETS (default 50000), FUZZ_CONNECTIONS and FUZZ_SEED are passed through to the test.
fuzz: install system-deps ## fuzz the SFTP packet stream for longer than `make test` does (FUZZ_PACKETS=50000)
	FUZZ_PACKETS=$${FUZZ_PACKETS:-50000} npm run fuzz

bench: install system-deps ## run the benchmarks (ratios against a baseline measured in the same run)
	npm run bench
	node bench/tenk.ts
	node --test bench/login-spray.test.ts

run: install system-deps ## start a local Swift S3 emulator and the server with a demo user
	node dev/run.ts

image: ## build the container image s3sftp:<package.json version> (needs a Docker engine)
	docker build -t s3sftp:$(VERSION) .

# A chart package is a gzipped tar of the chart directory under the chart's name. Without helm, the same
# archive is built with tar, leaving out what .helmignore lists (names and globs; a leading "/" anchors
# a pattern at the chart's root, a trailing "/" is dropped).
chart: ## package the Helm chart as dist/s3sftp-<chart version>.tgz (helm package, or tar without helm)
	@mkdir -p dist
	@set -eo pipefail; \
	if command -v $(HELM) >/dev/null 2>&1; then \
	  $(HELM) package $(CHART_DIR) -d dist; \
	else \
	  version='$(CHART_VERSION)'; \
	  if [ -z "$$version" ]; then echo "no version: line in $(CHART_DIR)/Chart.yaml" >&2; exit 1; fi; \
	  excludes=(); \
	  if [ -f $(CHART_DIR)/.helmignore ]; then \
	    while IFS= read -r pattern || [ -n "$$pattern" ]; do \
	      pattern="$${pattern%$$'\r'}"; pattern="$${pattern%/}"; \
	      case "$$pattern" in ''|'#'*) continue ;; /*) pattern="$(CHART_NAME)$$pattern" ;; esac; \
	      excludes+=("--exclude=$$pattern"); \
	    done < $(CHART_DIR)/.helmignore; \
	  fi; \
	  out="dist/$(CHART_NAME)-$$version.tgz"; \
	  tar -C $(dir $(CHART_DIR)) --sort=name --owner=0 --group=0 --numeric-owner "$${excludes[@]}" \
	    -cf - $(CHART_NAME) | gzip -n > "$$out.tmp"; \
	  mv "$$out.tmp" "$$out"; \
	  echo "Packaged the chart as $$out (with tar: $(HELM) is not installed)"; \
	fi

clean: ## remove build output and local state
	rm -rf dist .run
