# egressguard: `make help` lists the targets.
GO        ?= go
BIN       := bin
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
FUZZ_TIME ?= 10s
BENCH     ?= .
GOLANGCI_LINT_VERSION := v2.15.0

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build bin/egressguard
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/egressguard ./cmd/egressguard

.PHONY: run
run: ## Run the guard on its embedded defaults (DNS :5353, xDS :18000, admin :9901 on 127.0.0.1)
	@if [ -x $(BIN)/egressguard ]; then echo "make run: rebuilding $(BIN)/egressguard (seconds when Go's build cache is warm)"; \
	else echo "make run: building $(BIN)/egressguard first. A cold build (empty Go caches) downloads the"; \
		echo "  modules and compiles OPA, Envoy's API, gRPC and client-go: about 3 to 6 minutes on 2 cores; later builds take seconds."; fi
	@$(MAKE) --no-print-directory build
	@echo "make run: serving DNS on 127.0.0.1:5353, xDS on 127.0.0.1:18000, the admin page on http://127.0.0.1:9901 (Ctrl-C stops)"
	$(BIN)/egressguard serve

.PHONY: test
test: test-deps kube-tools ## Run all tests with the race detector; lists skipped tests and why at the end
	@$(GO) build -o $(BIN)/testsummary ./internal/testsummary
	$(BIN)/testsummary -- $(GO) test -race -timeout 20m -json ./...

# Some tests drive tools from Debian: chromium (the admin page's browser
# test) and iptables (the sidecar capture rules, applied in a network
# namespace the test creates). Without them those tests skip and the
# summary at the end of `make test` says so. Installing is attempted only
# as root with apt-get, says what it installs and why first, and a failure
# never fails the build. TEST_DEPS=0 skips installing.
TEST_TOOLS := chromium:chromium:the-admin-page-browser-test iptables-restore:iptables:the-traffic-capture-test-in-a-network-namespace
TEST_DEPS  ?= 1

# The integration tests in test/kubeapi run a real kube-apiserver and etcd,
# built from pinned modules (test/kubeapi/tools) into the user cache
# directory. Built here, before the test run, so that a cold build (about
# 10 minutes on 2 idle cores, far longer on busy ones) has its own timeout.
.PHONY: kube-tools
kube-tools: ## Build (or find cached) the kube-apiserver and etcd the integration tests start
	@echo "kube-tools: building kube-apiserver and etcd for test/kubeapi if not cached (cold: 10+ minutes on 2 cores; cached after)"
	KUBEAPI_BUILD_ONLY=1 $(GO) test -count=1 -timeout 90m ./test/kubeapi/

.PHONY: test-deps
test-deps: ## Install what the tests use where possible (chromium, iptables), saying so first
	@for t in $(TEST_TOOLS); do cmd=$${t%%:*}; rest=$${t#*:}; pkg=$${rest%%:*}; why=$$(echo $${rest#*:} | tr - ' '); \
	if command -v $$cmd >/dev/null 2>&1 || [ -x /usr/sbin/$$cmd ]; then :; \
	elif [ "$(TEST_DEPS)" = 0 ]; then echo "test-deps: $$cmd not found, not installing (TEST_DEPS=0); $$why will skip"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "test-deps: installing the Debian package $$pkg with apt-get for $$why (TEST_DEPS=0 skips this)"; \
		apt-get install -y -q --no-install-recommends $$pkg >/dev/null || \
		{ apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends $$pkg >/dev/null; } || \
		echo "test-deps: warning: could not install $$pkg; $$why will skip"; \
	else echo "test-deps: $$cmd not found and not root with apt-get; $$why will skip"; fi; done

.PHONY: test-short
test-short: ## Run all tests without the race detector
	$(GO) test -timeout 10m ./...

.PHONY: bench
bench: ## Run the Go benchmarks (BENCH=regexp to select); bench/*.sh run the peer comparisons
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem ./...

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZ_TIME each (default 10s)
	@set -e; for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "== $$pkg $$f"; \
			$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZ_TIME) $$pkg; \
		done; \
	done

# Every package whose tests keep golden files; each defines -update, which
# rewrites them and deletes stale ones. internal/repocheck fails when a
# package with goldens or an -update flag is missing here.
GOLDEN_PKGS := ./deploy ./inject ./inject/capture ./inventory ./policy ./policy/decisionlog ./policy/review ./xds

.PHONY: update-golden
update-golden: ## Rewrite every golden file in the tree from the current code (review the diff)
	$(GO) test -count=1 $(GOLDEN_PKGS) -update

$(BIN)/golangci-lint:
	GOBIN=$(CURDIR)/$(BIN) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)

.PHONY: lint
lint: $(BIN)/golangci-lint ## go vet, gofmt and golangci-lint (installed into bin/ at a pinned version)
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(BIN)/golangci-lint run ./...

.PHONY: clean
clean: ## Remove build output
	rm -rf $(BIN)
