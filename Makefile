# georep — see README.md.
GO      ?= go
BIN     := bin/georep
DEMO    ?= /tmp/georep-demo
PKGS    := fuse3 attr rsync fio chromium curl procps

.PHONY: all deps build test test-unit test-integration fuzz bench run stop clean

all: build

# deps installs the Debian packages a fresh machine lacks (root only).
deps:
	@missing=""; for p in $(PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" != 0 ]; then echo "georep: please install:$$missing (as root)"; exit 1; fi; \
		echo "installing:$$missing"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@[ -e /dev/fuse ] || modprobe fuse 2>/dev/null || true

build:
	$(GO) build -o $(BIN) ./cmd/georep

# test runs everything: vet, unit tests (race detector on the pure-Go
# packages), the mount and integration tests, and a short fuzz run of
# every decoder of untrusted bytes.
test: deps
	$(GO) vet ./...
	$(GO) test -count=1 -race ./journal/... ./index/... ./node/... ./sync/... ./failover/...
	$(GO) test -count=1 -race ./web/...
	$(GO) test -count=1 ./fs/... ./cmd/... ./bench/...
	$(GO) test -count=1 -timeout 20m ./integration/...
	$(MAKE) fuzz

# every decoder of untrusted bytes has a fuzz target; each runs briefly.
# Counts, not durations: on Go 1.26 a duration -fuzztime can fail with a
# spurious "context deadline exceeded" at its end (go.dev/issue/75804).
# Each count is a few seconds here; FUZZX=10 runs ten times as many.
FUZZX ?= 1
fuzz:
	$(GO) test ./journal -run '^$$' -fuzz '^FuzzDecodeWAL$$' -fuzztime $$((100000 * $(FUZZX)))x
	$(GO) test ./sync -run '^$$' -fuzz '^FuzzCheckPath$$' -fuzztime $$((60000 * $(FUZZX)))x
	$(GO) test ./sync -run '^$$' -fuzz '^FuzzDecodeFrames$$' -fuzztime $$((100000 * $(FUZZX)))x
	$(GO) test ./sync -run '^$$' -fuzz '^FuzzApplyBatch$$' -fuzztime $$((2000 * $(FUZZX)))x
	$(GO) test ./failover -run '^$$' -fuzz '^FuzzDecodeMessage$$' -fuzztime $$((100000 * $(FUZZX)))x
	$(GO) test ./web -run '^$$' -fuzz '^FuzzParseHash$$' -fuzztime $$((50000 * $(FUZZX)))x

# bench measures the mount against native and plain go-fuse loopback and
# writes BENCHMARKS.md.
bench: deps
	$(GO) run ./bench -out BENCHMARKS.md

# run starts a two-node demo on this machine: a primary (node a) and a
# secondary (node b) on 127.0.0.1, each with its own state, backing dir and
# mount under $(DEMO).
run: deps build
	@if [ "$$(id -u)" != 0 ]; then echo "make run needs root (the daemons mount with mount(2))"; exit 1; fi
	@$(MAKE) -s stop >/dev/null 2>&1 || true
	@for n in a b; do mkdir -p $(DEMO)/$$n/backing $(DEMO)/$$n/mnt; done
	@[ -e $(DEMO)/takeover-password ] || echo "georep-demo-$$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')" > $(DEMO)/takeover-password
	@[ -e $(DEMO)/a/state/node.json ] || ./$(BIN) init --state $(DEMO)/a/state --name a --listen 127.0.0.1:7401 >/dev/null
	@[ -e $(DEMO)/b/state/node.json ] || ./$(BIN) init --state $(DEMO)/b/state --name b --listen 127.0.0.1:7402 >/dev/null
	@./$(BIN) peer list --state $(DEMO)/a/state | grep -q '^b ' || \
		./$(BIN) peer add --state $(DEMO)/a/state b 127.0.0.1:7402 $$(./$(BIN) id --state $(DEMO)/b/state) >/dev/null
	@./$(BIN) peer list --state $(DEMO)/b/state | grep -q '^a ' || \
		./$(BIN) peer add --state $(DEMO)/b/state a 127.0.0.1:7401 $$(./$(BIN) id --state $(DEMO)/a/state) >/dev/null
	@nohup ./$(BIN) daemon --state $(DEMO)/b/state --backing $(DEMO)/b/backing --mount $(DEMO)/b/mnt \
		--http 127.0.0.1:7482 --takeover-password-file $(DEMO)/takeover-password \
		>$(DEMO)/b/daemon.log 2>&1 & echo $$! > $(DEMO)/b/daemon.pid
	@nohup ./$(BIN) daemon --state $(DEMO)/a/state --backing $(DEMO)/a/backing --mount $(DEMO)/a/mnt --primary \
		--http 127.0.0.1:7481 --takeover-password-file $(DEMO)/takeover-password \
		>$(DEMO)/a/daemon.log 2>&1 & echo $$! > $(DEMO)/a/daemon.pid
	@for i in $$(seq 100); do ./$(BIN) status --state $(DEMO)/a/state --local >/dev/null 2>&1 && \
		./$(BIN) status --state $(DEMO)/b/state --local >/dev/null 2>&1 && break; sleep 0.1; done
	@# The roles are persisted: after a failover b may be the primary (a then
	@# comes back fenced and follows it). Wait until one is primary, the other
	@# its secondary.
	@role() { ./$(BIN) status --state $(DEMO)/$$1/state --json --local 2>/dev/null | grep -o '"role": "[a-z]*"' | cut -d'"' -f4; }; \
	for i in $$(seq 150); do ra=$$(role a); rb=$$(role b); \
		if [ "$$ra" = primary ] && [ "$$rb" = secondary ]; then p=a; s=b; break; fi; \
		if [ "$$rb" = primary ] && [ "$$ra" = secondary ]; then p=b; s=a; break; fi; sleep 0.1; done; \
	if [ -z "$$p" ]; then echo "the demo nodes did not settle on one primary (a: $$ra, b: $$rb); see $(DEMO)/*/daemon.log"; exit 1; fi; \
	./$(BIN) sync --state $(DEMO)/$$p/state --wait --timeout 30s && \
	./$(BIN) status --state $(DEMO)/$$p/state && \
	echo && \
	echo "Node $$p (primary) is mounted at $(DEMO)/$$p/mnt, node $$s (secondary, read-only) at $(DEMO)/$$s/mnt." && \
	echo "Logs: $(DEMO)/a/daemon.log, $(DEMO)/b/daemon.log." && \
	echo "Status pages: a http://127.0.0.1:7481/  b http://127.0.0.1:7482/ (takeover password: $$(cat $(DEMO)/takeover-password))." && \
	echo "Try:" && \
	echo "  echo hello > $(DEMO)/$$p/mnt/hello.txt; mkdir $(DEMO)/$$p/mnt/d; mv $(DEMO)/$$p/mnt/hello.txt $(DEMO)/$$p/mnt/d/" && \
	echo "  cat $(DEMO)/$$s/mnt/d/hello.txt                              # replicated within a second" && \
	echo "  ./$(BIN) status --state $(DEMO)/$$p/state                    # roles side by side; peers: acked seq, lag, pending" && \
	echo "  ./$(BIN) sync   --state $(DEMO)/$$p/state --wait             # returns once $$s has everything" && \
	echo "  ./$(BIN) verify --state $(DEMO)/$$p/state                    # compare both trees by content hash" && \
	echo "  ./$(BIN) journal --state $(DEMO)/$$p/state                   # every change, in order" && \
	echo "Failover and failback:" && \
	echo "  kill -9 \$$(cat $(DEMO)/$$p/daemon.pid)                       # the primary dies" && \
	echo "  ./$(BIN) failover start --state $(DEMO)/$$s/state            # $$s is the primary now (epoch+1)" && \
	echo "      (or: the Take over button of $$s's status page)" && \
	echo "  make run                                                  # $$p comes back fenced, then follows $$s" && \
	echo "  ./$(BIN) failback start --state $(DEMO)/$$p/state --wait     # $$p catches up in the background" && \
	echo "  ./$(BIN) failback commit --state $(DEMO)/$$p/state           # $$p is the primary again" && \
	echo "  make stop                                                  # unmount and stop both"

stop:
	@for n in a b; do if [ -f $(DEMO)/$$n/daemon.pid ]; then kill -TERM $$(cat $(DEMO)/$$n/daemon.pid) 2>/dev/null || true; \
		for i in $$(seq 50); do kill -0 $$(cat $(DEMO)/$$n/daemon.pid) 2>/dev/null || break; sleep 0.1; done; \
		rm -f $(DEMO)/$$n/daemon.pid; fi; \
		grep -q " $(DEMO)/$$n/mnt " /proc/mounts && umount -l $(DEMO)/$$n/mnt || true; done
	@echo "demo stopped"

clean: stop
	rm -rf bin
