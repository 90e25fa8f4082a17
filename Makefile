# georep — see README.md.
GO      ?= go
BIN     := bin/georep
DEMO    ?= /tmp/georep-demo
PKGS    := fuse3 attr rsync fio
FUZZTIME ?= 5s

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
	$(GO) test -count=1 -race ./journal/... ./index/... ./node/... ./sync/...
	$(GO) test -count=1 ./fs/... ./cmd/... ./bench/...
	$(GO) test -count=1 -timeout 20m ./integration/...
	$(MAKE) fuzz

# every decoder of untrusted bytes has a fuzz target; each runs briefly.
fuzz:
	$(GO) test ./journal -run '^$$' -fuzz '^FuzzDecodeWAL$$' -fuzztime $(FUZZTIME)
	$(GO) test ./sync -run '^$$' -fuzz '^FuzzCheckPath$$' -fuzztime $(FUZZTIME)
	$(GO) test ./sync -run '^$$' -fuzz '^FuzzDecodeFrames$$' -fuzztime $(FUZZTIME)
	$(GO) test ./sync -run '^$$' -fuzz '^FuzzApplyBatch$$' -fuzztime $(FUZZTIME)

# bench measures the mount against native and plain go-fuse loopback and
# writes BENCHMARKS.md.
bench: deps
	$(GO) run ./bench -out BENCHMARKS.md

# run starts a demo: a journaled mount of $(DEMO)/backing at $(DEMO)/mnt.
run: deps build
	@if [ "$$(id -u)" != 0 ]; then echo "make run needs root (the daemon mounts with mount(2))"; exit 1; fi
	@$(MAKE) -s stop >/dev/null 2>&1 || true
	@mkdir -p $(DEMO)/backing $(DEMO)/mnt
	@[ -e $(DEMO)/state/node.json ] || ./$(BIN) init --state $(DEMO)/state --name demo >/dev/null
	@nohup ./$(BIN) daemon --state $(DEMO)/state --backing $(DEMO)/backing --mount $(DEMO)/mnt --primary \
		>$(DEMO)/daemon.log 2>&1 & echo $$! > $(DEMO)/daemon.pid
	@for i in $$(seq 50); do ./$(BIN) status --state $(DEMO)/state >/dev/null 2>&1 && break; sleep 0.1; done
	@./$(BIN) status --state $(DEMO)/state
	@echo
	@echo "The demo volume is mounted at $(DEMO)/mnt (log: $(DEMO)/daemon.log). Try:"
	@echo "  echo hello > $(DEMO)/mnt/hello.txt; mkdir $(DEMO)/mnt/d; mv $(DEMO)/mnt/hello.txt $(DEMO)/mnt/d/"
	@echo "  ./$(BIN) journal --state $(DEMO)/state            # every change, in order"
	@echo "  ./$(BIN) journal --state $(DEMO)/state --json     # one JSON object per line"
	@echo "  ./$(BIN) status --state $(DEMO)/state --json"
	@echo "  kill -9 \$$(cat $(DEMO)/daemon.pid); make run        # crash and recover"
	@echo "  make stop                                          # unmount and stop"

stop:
	@if [ -f $(DEMO)/daemon.pid ]; then kill -TERM $$(cat $(DEMO)/daemon.pid) 2>/dev/null || true; \
		for i in $$(seq 50); do kill -0 $$(cat $(DEMO)/daemon.pid) 2>/dev/null || break; sleep 0.1; done; \
		rm -f $(DEMO)/daemon.pid; fi
	@grep -q " $(DEMO)/mnt " /proc/mounts && umount -l $(DEMO)/mnt || true
	@echo "demo stopped"

clean: stop
	rm -rf bin
