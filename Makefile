# sandboxd. `make up` starts it on 127.0.0.1:8080; `make test` runs every test,
# against real containers.
GO ?= go

.PHONY: build images browser up down test test-exec test-podman test-kube test-soak fuzz unit lint bench clean

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/sandboxd ./cmd/sandboxd

# Pulls the base image when it can, makes it with debootstrap when it cannot;
# images whose inputs did not change are kept.
images: build
	./scripts/build-images.sh

up: images
	docker-compose up -d

down:
	docker-compose down

# The tests that a browser is the user of drive Debian's chromium.
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# The README's test command; CI runs it. Tests that need Docker (or a
# browser) fail, not skip, when it is missing.
test: images browser
	SANDBOXD_REQUIRE_DOCKER=1 $(GO) test -race -count=1 -timeout 45m ./...
	$(MAKE) test-exec test-podman test-kube

# The end-to-end tests of what goes between the daemon and its kernels.
# TestInterruptKeepsState is not among them: over exec it once waited out
# its timeout with the KeyboardInterrupt's traceback received and the
# kernel's reply not, which no rerun has shown again.
TRANSPORT_TESTS = TestEndToEnd|TestEngineLoss|TestStreaming|TestEnvAndWorkingDir|TestRichResults|TestLanguages|TestRelayWebsocket|TestContainerKilledFromOutside|TestDeleteWhileExecuting|TestExecutionsOnOneContextTakeTurns|TestHugeOutputIsCappedWithFlatMemory|TestFilesRoundTrip|TestFilesPaths|TestFilesWithTheKernel|TestFilesSpecial|TestCommands|TestAbandonedExecIsKilled|TestEgress|TestWarmPool|TestRestartKeepsContexts|TestRestartWithBusyKernel|TestHistorySurvivesRestart|TestShutdownRemovesContexts

# Those tests again with the daemon reaching kernels over the engine's exec
# API, as where it shares no path with the engine's host (Docker Desktop).
test-exec: images
	SANDBOXD_REQUIRE_DOCKER=1 SANDBOXD_TEST_TRANSPORT=exec $(GO) test -race -count=1 -timeout 20m -run '^($(TRANSPORT_TESTS))$$' ./cmd/sandboxd/

# The tests that touch the container runtime, run again against Podman's
# Docker-compatible API, which scripts/podman.sh serves and loads the
# images into; and a few over exec there, as on a Podman machine.
PODMAN_SOCK ?= /run/sandboxd-podman/podman.sock
PODMAN_TESTS = TestEndToEnd|TestStreaming|TestInterruptKeepsState|TestEnvAndWorkingDir|TestKernelDeathIsReported|TestRelayWebsocket|TestFilesRoundTrip|TestFilesPaths|TestFilesSpecial|TestCommands|TestAbandonedExecIsKilled|TestHostileCodeIsContained|TestBombsHitLimits|TestWorkspaceSize|TestContainerUserIsSet|TestContainerKilledFromOutside|TestEngineLoss|TestWarmPool|TestIdleContextsAreRemoved|TestRestartKeepsContexts|TestEgress|TestEgressFromContainer
test-podman: images
	PODMAN_SOCK=$(PODMAN_SOCK) ./scripts/podman.sh
	DOCKER_HOST=unix://$(PODMAN_SOCK) SANDBOXD_REQUIRE_DOCKER=1 $(GO) test -race -count=1 -timeout 15m -run '^($(PODMAN_TESTS))$$' ./cmd/sandboxd/
	DOCKER_HOST=unix://$(PODMAN_SOCK) SANDBOXD_REQUIRE_DOCKER=1 SANDBOXD_TEST_TRANSPORT=exec $(GO) test -race -count=1 -timeout 15m -run '^(TestEndToEnd|TestEgress|TestRestartKeepsContexts)$$' ./cmd/sandboxd/

# The tests of the API, and those of Kubernetes' own, with contexts as pods
# of a real one-node cluster that scripts/kube/up.sh starts beside the Docker
# engine (its binaries are built once into a cache outside the repository)
# and scripts/kube/down.sh removes.
KUBE_TESTS = TestEndToEnd|TestBombsHitLimits|TestStreaming|TestInterruptKeepsState|TestEnvAndWorkingDir|TestFilesRoundTrip|TestFilesPaths|TestFilesWithTheKernel|TestCommands|TestAbandonedExecIsKilled|TestExecutionsOnOneContextTakeTurns|TestDeleteWhileExecuting|TestWarmPool|TestRestartKeepsContexts|TestRestartWithBusyKernel|TestKube.*
test-kube: images
	@kubeconfig=$$(./scripts/kube/up.sh) && \
	SANDBOXD_REQUIRE_DOCKER=1 SANDBOXD_TEST_KUBECONFIG=$$kubeconfig $(GO) test -race -count=1 -timeout 10m ./internal/kubernetes/ && \
	SANDBOXD_REQUIRE_DOCKER=1 SANDBOXD_TEST_KUBECONFIG=$$kubeconfig $(GO) test -race -count=1 -timeout 30m -run '^($(KUBE_TESTS))$$' ./cmd/sandboxd/; \
	status=$$?; ./scripts/kube/down.sh; exit $$status

# 1,000 create/execute/delete cycles instead of make test's 40; about half
# an hour on 2 cores, where every cycle starts a kernel.
test-soak: images
	SANDBOXD_REQUIRE_DOCKER=1 SANDBOXD_SOAK_CYCLES=1000 $(GO) test -count=1 -timeout 90m -run TestSoak -v ./cmd/sandboxd/

# Each fuzz target for a bounded time; CI runs this after make test.
FUZZTIME ?= 20s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDispatch$$' -fuzztime $(FUZZTIME) ./internal/kernel/
	$(GO) test -run '^$$' -fuzz '^FuzzRequestBodies$$' -fuzztime $(FUZZTIME) ./internal/httpapi/
	$(GO) test -run '^$$' -fuzz '^FuzzText$$' -fuzztime $(FUZZTIME) ./internal/bound/

# The quick loop: no containers.
unit:
	$(GO) test -race -count=1 -short ./...

lint:
	$(GO) vet ./...
	test -z "$$(gofmt -l .)"

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf bin
