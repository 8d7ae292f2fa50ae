# podwall: every target a newcomer or CI needs. `make help` lists them.
GO          ?= go
BIN         := bin
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
SEED        := examples/seed
FUZZTIME    ?= 30s
BENCHCOUNT  ?= 6

# envtest finds the real kube-apiserver and etcd here (hack/install-test-deps.sh).
export KUBEBUILDER_ASSETS ?= $(CURDIR)/bin/k8s

.PHONY: help build seed test test-deps bench fuzz lint bundle clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

build: ## build the podwall binary into bin/
	$(GO) build -o $(BIN)/podwall ./cmd/podwall
	$(GO) build ./...

seed: build ## the seed scenario's reachability, stage by stage
	@echo "== stage 0: no NetworkPolicy"
	@$(BIN)/podwall reach -f $(SEED)/cluster --from pods --from nodes --port 80 --protocol TCP,ICMP
	@echo
	@echo "== stage 1: $(SEED)/original/networkpolicy.yaml (only access=true pods, TCP 80)"
	@$(BIN)/podwall reach -f $(SEED)/cluster -f $(SEED)/original/networkpolicy.yaml --from pods --from nodes --port 80 --protocol TCP,ICMP
	@echo
	@echo "== stage 2: $(SEED)/original/networkpolicy-ipblock.yaml (plus the node network 192.168.2.0/24)"
	@$(BIN)/podwall reach -f $(SEED)/cluster -f $(SEED)/original/networkpolicy-ipblock.yaml --from pods --from nodes --port 80 --protocol TCP,ICMP
	@echo
	@echo "== why busybox cannot reach httpd-1 in stage 1"
	@$(BIN)/podwall explain -f $(SEED)/cluster -f $(SEED)/original/networkpolicy.yaml --from default/busybox --to default/httpd-1 --port 80

test: test-deps ## build everything and run every test (the README's and CI's test command)
	$(GO) build ./...
	$(GO) test -count=1 -timeout 40m ./...

test-deps: ## Debian packages (etcd, nftables, iproute2, conntrack) and kube-apiserver built from source into bin/k8s
	bash hack/install-test-deps.sh

bench: ## run the benchmarks (BENCHCOUNT runs each; feed to benchstat for medians)
	$(GO) test -run '^$$' -bench . -benchmem -count $(BENCHCOUNT) ./policylib/...

fuzz: ## run every fuzz target for FUZZTIME each
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "fuzz $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; done

lint: ## gofmt, go vet and staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

bundle: build ## test the Rego rules and build them into bin/podwall-rules.tar.gz (an OPA bundle)
	$(BIN)/podwall opa test rules/
	cd rules && ../$(BIN)/podwall opa build -b . --ignore '*_test.rego' \
	  --revision "$$(git describe --always --dirty)" -o ../$(BIN)/podwall-rules.tar.gz

clean: ## remove build outputs
	rm -rf $(BIN)/podwall
