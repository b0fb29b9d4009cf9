# crrelay: `make run` starts the appliance on embedded defaults,
# `make test` runs every test (installing the Debian packages the interop
# tests need when missing).
GO       ?= go
BIN      := bin/crrelay
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
# Debian packages the interop tests use: Apache httpd with mod_auth_digest,
# curl, iproute2 + nftables for the real-NAT tests in network namespaces,
# dig (bind9-dnsutils) for the DNS responder interop test, python3-slixmpp
# for the XMPP CPE and ACS clients of interop/slixmpp (woken by, and
# waking through, the appliance's broker), and Prosody as the reference
# XMPP server of the simulator's tests.
TEST_DEBS := apache2 apache2-utils curl iproute2 nftables bind9-dnsutils python3-slixmpp prosody

.PHONY: all build run demo test test-deps vet fuzz bench clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/crrelay

run: build
	./$(BIN) serve $(ARGS)

# One command that shows crrelay working: the appliance in its own
# process, 1,000 simulated HTTP, STUN and XMPP CPEs, one campaign waking
# them all; loopback only. DEMO_ARGS passes flags (go run ./demo -h).
demo: build
	$(GO) run ./demo $(DEMO_ARGS)

# Install missing test packages (root only; elsewhere the interop tests
# skip with a message).
test-deps:
	@missing=""; for p in $(TEST_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "not root: interop tests needing$$missing will skip"; fi; \
	fi

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { gofmt -l .; echo "gofmt needed"; exit 1; }

test: test-deps vet
	$(GO) test -race -count=1 -timeout 12m ./...
	$(GO) test -run '^$$' -bench . -benchtime=1x -count=1 ./...

# Short fuzzing of every fuzz target (parsers of network and stored
# input); FUZZTIME per target.
FUZZTIME ?= 30s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

# The Go benchmarks (codecs, registry, STUN server, campaign engine, an
# XMPP IQ round trip through the broker in one process; about two
# minutes), then the load tools against the binary in its own process,
# which print the table.
bench: build
	$(GO) test -run '^$$' -bench . -benchmem -count=1 ./...
	$(GO) run ./bench

clean:
	rm -rf bin
