# Everyday targets. `make test` is what CI runs (.ci/run) and what the README
# tells a newcomer to run.

GO        ?= go
# make test runs each of the 24-odd fuzz targets for SMOKETIME (the suite
# stays under 10 minutes on 2 cores); `make fuzz` for FUZZTIME, longer.
FUZZTIME  ?= 1m
SMOKETIME ?= 3s
BENCHTIME ?= 1s
BIN       ?= bin

# package:FuzzTarget pairs: every parser that reads the network or the disk
# has one, and internal/repotest fails when a Fuzz function is missing here.
FUZZ_TARGETS = \
	./core/smtp:FuzzParseCommand \
	./core/smtp:FuzzParseMail \
	./core/smtp:FuzzParseRcpt \
	./core/smtp:FuzzDataReader \
	./core/smtp:FuzzReadReply \
	./core/smtp:FuzzCRLFReader \
	./core/smtp:FuzzXText \
	./core/smtp:FuzzProxyHeader \
	./core/message:FuzzHopCounter \
	./core/message:FuzzRewrite \
	./core/mailauth:FuzzHeaderParsers \
	./core/envelope:FuzzParsePath \
	./core/dkim:FuzzSign \
	./core/config:FuzzParse \
	./core/config:FuzzParseSize \
	./core/config:FuzzParseDuration \
	./core/queue:FuzzDecodeMessage \
	./core/queue:FuzzBoltFile \
	./core/queue:FuzzAppendRecord \
	./core/queue:FuzzReadRecord \
	./core/message:FuzzParseHeader \
	./core/cluster:FuzzDecodeEntry \
	./core/pickup:FuzzParseEnvelope \
	./core/arc:FuzzParseTags \
	./core/tlsrpt:FuzzParseRecord \
	./core/tlsrpt:FuzzDecodeCounts \
	./core/mtasts:FuzzParsePolicy \
	./core/mtasts:FuzzParseRecord \
	./core/mtasts:FuzzDecodeStored \
	./core/dane:FuzzVerify \
	./core/arc:FuzzVerify \
	./core/lua/pattern:FuzzFind \
	./sdk:FuzzFromPB \
	./sdk:FuzzParseRequest \
	./plugins/aliases:FuzzParse \
	./plugins/webhook:FuzzDocument

STATICCHECK = honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: all build test vet race fuzz fuzz-smoke lint bench bench-all plugins clean

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
	@$(MAKE) --no-print-directory fuzz FUZZTIME=$(SMOKETIME)

# Each target runs for FUZZTIME, minimising new inputs for at most
# FUZZMINIMIZE so minimisation cannot eat the budget, FUZZJOBS targets at
# once (their compiles and baseline runs are mostly one core each).
# tools/fuzz-target.sh runs one, and says how Go 1.26's end-of-fuzztime
# race (golang/go#75804) is told from a finding.
FUZZMINIMIZE ?= 2s
FUZZJOBS     ?= 2

fuzz:
	@printf '%s\n' $(FUZZ_TARGETS) | xargs -P $(FUZZJOBS) -n 1 sh tools/fuzz-target.sh "$(GO)" $(FUZZTIME) $(FUZZMINIMIZE)

lint: vet
	$(GO) run $(STATICCHECK) ./...

# `make bench`: the hot paths of issue 14 in one run: the commit loop
# (msgs/fsync with 20 writers, alone and with each message then deferred),
# a record's encoding, accept with no hook, with a Lua rcpt+data pair and
# with one plugin rcpt hook (cpu-µs/msg, msgs/s), the same three paired
# with a server without hooks in one process (the ratios the issue asks
# for: lua/nohooks, withplugin/noplugin, and go/nohooks for the same work
# in a Go handler, the floor under both), the Lua and plugin pairs again on
# durable spools (each 250 after an fsync: the issue's measure), one Lua
# and one plugin call, and the delivery engine. `make bench-all` runs every benchmark.
BENCH      ?= ^Benchmark(Commit(Defer)?Parallel|EncodeRecord|Accept(NoHooks|WithLua|NoPlugin|WithPlugin)|Accept(Lua|Go|Plugin)Paired|Accept(Lua|Plugin)PairedDurable|Lua(RcptCall|DataCall|DataCallParsed)|PluginRcptCall(Parallel)?|Engine)$$
BENCH_PKGS ?= ./core/queue ./scripts ./core/pluginhost ./core/delivery

bench:
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -benchtime $(BENCHTIME) $(BENCH_PKGS)

bench-all:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./...

# Every plugins/<name> is built as bin/gateway-plugin-<name>.
plugins:
	@set -e; for d in plugins/*/; do \
		[ -f $$d/main.go ] || continue; \
		n=$$(basename $$d); $(GO) build -o $(BIN)/gateway-plugin-$$n ./$$d; \
	done

clean:
	rm -rf $(BIN)
