# Flowgate — the two commands a newcomer needs:
#   make run    Flowgate in one process (embedded NATS + embedded store), on 127.0.0.1:8080
#   make test   every test, with the set-up the tests need

GO ?= go

.PHONY: run test test-deps vet tidy-check clock-check test-clock-shift build fuzz bench

run:
	$(GO) run ./cmd/flowgate dev

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o flowgate ./cmd/flowgate

# bench/ is a module of its own (its plotting library is no product
# dependency): the root ./... does not reach it, so it is vetted, built and
# tested here by name.
test: test-deps vet tidy-check clock-check
	$(GO) test -race -timeout 25m ./...
	$(GO) -C bench build ./...
	$(GO) -C bench test -race ./...
	$(MAKE) --no-print-directory test-clock-shift

# go.mod and go.sum exactly as `go mod tidy` leaves them, in both modules.
tidy-check:
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run 'go mod tidy'"; exit 1; }
	@$(GO) -C bench mod tidy -diff || { echo "bench/go.mod/go.sum are not tidy: run 'go -C bench mod tidy'"; exit 1; }

# Every fixed date in a test is a test clock (shared/testclock), unless the
# line says it is data (a date to parse or encode, never compared with a clock).
clock-check:
	@bad=$$(grep -rn --include='*_test.go' 'time\.Date(' . | grep -v 'testclock: data' | grep -v '^./shared/testclock/' || true); \
	if [ -n "$$bad" ]; then echo "fixed dates in tests must come from shared/testclock (or be marked '// testclock: data, not a clock'):"; echo "$$bad"; exit 1; fi

# The tests that fix their clock, again with that clock ten years earlier and
# ten years later: a test that mixes its fixed clock with the real one (a
# double or a sender left on time.Now) fails here at once, not weeks later.
CLOCK_PKGS = $$($(GO) list -f '{{.ImportPath}} {{join .TestImports " "}} {{join .XTestImports " "}}' ./... | awk '/shared\/testclock/ {print $$1}')
# The two runs go side by side (their longest package, the pacer's, waits
# on real rates, not on the CPU), each printed whole once both ended.
test-clock-shift:
	@pkgs="$(CLOCK_PKGS)"; out=$$(mktemp -d); \
	for shift in -87600h 87600h; do \
	  ( FLOWGATE_TEST_CLOCK_SHIFT=$$shift $(GO) test -count=1 -timeout 10m $$pkgs > $$out/$$shift.log 2>&1; echo $$? > $$out/$$shift.rc ) & \
	done; wait; rc=0; \
	for shift in -87600h 87600h; do \
	  echo "== FLOWGATE_TEST_CLOCK_SHIFT=$$shift"; cat $$out/$$shift.log; \
	  [ "$$(cat $$out/$$shift.rc)" = 0 ] || rc=1; \
	done; rm -rf $$out; exit $$rc

# Installs what the integration tests need (Prometheus for the metrics
# check); a no-op when it is already there.
test-deps:
	@if [ -x deploy/scripts/install-test-deps.sh ]; then deploy/scripts/install-test-deps.sh; fi

vet:
	$(GO) vet ./...
	$(GO) -C bench vet ./...
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
	$(GO) -C bench run ./ingress
