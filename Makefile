# Flowgate — the two commands a newcomer needs:
#   make run    Flowgate in one process (embedded NATS + embedded store), on 127.0.0.1:8080
#   make test   every test, with the set-up the tests need

GO ?= go

.PHONY: run test test-deps vet build fuzz bench

run:
	$(GO) run ./cmd/flowgate dev

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o flowgate ./cmd/flowgate

test: test-deps vet
	$(GO) test -race -timeout 25m ./...

# Installs what the integration tests need (Prometheus for the metrics
# check); a no-op when it is already there.
test-deps:
	@if [ -x deploy/scripts/install-test-deps.sh ]; then deploy/scripts/install-test-deps.sh; fi

vet:
	$(GO) vet ./...
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi

# Short runs of every fuzz target (FUZZTIME=30s make fuzz for longer).
FUZZTIME ?= 10s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list 'Fuzz.*' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

bench:
	$(GO) run ./bench/ingress
