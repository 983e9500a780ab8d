# offload: see README.md. Every target installs what it needs itself.
SHELL := /bin/bash
GO    ?= go
STACK := infra/local/stack
# How long "make fuzz" runs each fuzz target.
FUZZTIME ?= 30s
# Flags for the stack "make test" brings up, e.g. STACK_FLAGS="--tls" or "--s3 versitygw".
STACK_FLAGS ?=

.PHONY: help docs build package build-ResolverFunction sam-build bench demo test test-tls test-in-stack soak check-grants unit vet fuzz stack-up stack-down clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 16

build: ## bin/offload-agent, bin/offload-resolver (local) and bin/bootstrap (the Lambda, linux/arm64)
	CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=true -o bin/ ./agent/cmd/offload-agent ./lambda/cmd/offload-resolver
	GOOS=linux GOARCH=arm64 CGO_ENABLED=0 $(GO) build -tags lambda.norpc -trimpath -ldflags='-s -w' -o bin/bootstrap ./lambda/cmd/offload-resolver

package: ## the Debian package dist/offload_VERSION_ARCH.deb (needs dpkg-deb; version from git; infra/package)
	$(GO) run ./infra/package -o dist

# sam build (BuildMethod: makefile) calls this with ARTIFACTS_DIR set.
build-ResolverFunction:
	GOOS=linux GOARCH=arm64 CGO_ENABLED=0 $(GO) build -tags lambda.norpc -trimpath -ldflags='-s -w' -o $(ARTIFACTS_DIR)/bootstrap ./lambda/cmd/offload-resolver

sam-build: ## what "sam build" does for the resolver, without the sam CLI: .aws-sam/build/ResolverFunction/bootstrap
	$(MAKE) --no-print-directory build-ResolverFunction ARTIFACTS_DIR=$(CURDIR)/.aws-sam/build/ResolverFunction

demo: build ## the whole system on loopback for a person (stack, lighttpd, resolver, agent); Ctrl-C stops it
	$(GO) build -o bin/offload-demo ./infra/local/demo
	$(STACK) run -- bin/offload-demo

test: ## the full suite (vet, race detector, integration tests) on a private local stack
	$(STACK) run $(STACK_FLAGS) -- $(MAKE) --no-print-directory test-in-stack

test-tls: ## the full suite again with S3 (MinIO and the AWS shim) over HTTPS, as in production
	$(MAKE) --no-print-directory test STACK_FLAGS=--tls

# test-in-stack runs inside "stack run", which has set the stack's environment.
test-in-stack:
	$(GO) mod tidy -diff
	$(GO) vet ./...
	OFFLOAD_REQUIRE_STACK=1 $(GO) test -race -count=1 ./...

soak: ## the chaos soak, full profile: 2,000 files, 20 agent kills, 60 s outages (about 14 min); SEED=N replays a run
	$(STACK) run -- env OFFLOAD_REQUIRE_STACK=1 $(GO) test -count=1 -v -timeout 3h -run '^TestSoak$$' ./infra/soak \
		-args -soak.profile full $(if $(SEED),-soak.seed $(SEED))

docs: ## write the generated references again (docs/reference/cli.md from the binary's help, metrics.md from its metrics); make test fails while one is stale
	OFFLOAD_UPDATE_DOCS=1 $(GO) test -count=1 -run '^TestCLIReferenceIsCurrent$$' ./agent/cmd/offload-agent
	OFFLOAD_UPDATE_DOCS=1 $(GO) test -count=1 -run '^TestMetricsReferenceIsCurrent$$' ./agent

check-grants: ## take each S3 action template.yaml grants away in turn and prove a test fails without it (a few minutes); STACK_FLAGS=--kms adds the KMS actions
	$(GO) run ./infra/local/checkgrants $(if $(findstring --kms,$(STACK_FLAGS)),-kms)

unit: ## only the tests that need no stack (integration tests skip)
	$(GO) test -count=1 ./...

vet: ## go mod tidy -diff, go vet and gofmt
	$(GO) mod tidy -diff
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change: $$out"; exit 1; fi

fuzz: ## run every fuzz target for FUZZTIME (default 30s) each
	$(GO) test -run '^$$' -fuzz '^FuzzKeyForFile$$' -fuzztime $(FUZZTIME) .
	$(GO) test -run '^$$' -fuzz '^FuzzKeyForURL$$' -fuzztime $(FUZZTIME) .
	$(GO) test -run '^$$' -fuzz '^FuzzFunctionURL$$' -fuzztime $(FUZZTIME) ./lambda
	$(GO) test -run '^$$' -fuzz '^FuzzVerifyLink$$' -fuzztime $(FUZZTIME) .
	$(GO) test -run '^$$' -fuzz '^FuzzConfig$$' -fuzztime $(FUZZTIME) ./agent/cmd/offload-agent
	$(GO) test -run '^$$' -fuzz '^FuzzParseSize$$' -fuzztime $(FUZZTIME) ./agent/cmd/offload-agent
	$(GO) test -run '^$$' -fuzz '^FuzzResolverConfig$$' -fuzztime $(FUZZTIME) ./lambda/cmd/offload-resolver
	$(GO) test -run '^$$' -fuzz '^FuzzParseLine$$' -fuzztime $(FUZZTIME) ./agent/hotcache

# Flags for infra/bench, e.g. BENCH_FLAGS="--reps 5 --scenarios 1,3".
BENCH_FLAGS ?=

bench: build ## the agent against s5cmd and rclone on local MinIO over TLS (builds the peers once), then the Go benchmarks
	$(STACK) run --tls --bench-tools -- $(GO) run ./infra/bench --agent bin/offload-agent $(BENCH_FLAGS)
	$(GO) test -run '^$$' -bench . -benchmem ./lambda
	$(GO) test -run '^$$' -bench Scheduler -benchmem ./agent
	$(GO) test -run '^$$' -bench DemandEntry -benchmem ./agent/hotcache

stack-up: ## start the local stack (MinIO, dynalite, Toxiproxy); then eval "$(infra/local/stack env)"
	$(STACK) up

stack-down: ## stop the local stack
	$(STACK) down

clean: ## remove build outputs (the tool cache .cache/ stays; rm -rf .cache to rebuild it)
	rm -rf bin dist .aws-sam
