# Everyday targets. `make test` is what CI runs (.ci/run) and what the README
# tells a newcomer to run.

GO        ?= go
FUZZTIME  ?= 10s
BENCHTIME ?= 1s
BIN       ?= bin

# package:FuzzTarget pairs; every parser that reads the network has one.
FUZZ_TARGETS = \
	./core/smtp:FuzzParseCommand \
	./core/smtp:FuzzParseMail \
	./core/smtp:FuzzParseRcpt \
	./core/smtp:FuzzDataReader \
	./core/smtp:FuzzReadReply \
	./core/smtp:FuzzXText \
	./core/smtp:FuzzHopCounter \
	./core/envelope:FuzzParsePath

STATICCHECK = honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: all build test vet race fuzz fuzz-smoke lint bench plugins clean

all: build

build:
	$(GO) build -o $(BIN)/gateway ./cmd/gateway

# vet, the whole suite under the race detector, then each fuzz target briefly.
test: vet race fuzz-smoke

vet:
	$(GO) vet ./...

race:
	$(GO) test -race -count=1 ./...

fuzz-smoke:
	@$(MAKE) --no-print-directory fuzz FUZZTIME=$(FUZZTIME)

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$pkg $$name for $(FUZZTIME)"; \
		$(GO) test $$pkg -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME); \
	done

lint: vet
	$(GO) run $(STATICCHECK) ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./...

# Every plugins/<name> is built as bin/gateway-plugin-<name>.
plugins:
	@set -e; for d in plugins/*/; do \
		[ -f $$d/main.go ] || continue; \
		n=$$(basename $$d); $(GO) build -o $(BIN)/gateway-plugin-$$n ./$$d; \
	done

clean:
	rm -rf $(BIN)
